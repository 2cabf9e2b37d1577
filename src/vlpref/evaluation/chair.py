"""CHAIR on COCO (Rohrbach et al. 2018): describe COCO val2014 images, count the objects named that the image does
not contain, in the original (singularize) and OPERA (lemmatize) word-extraction variants (benchmarks.md §6).

    vlpref eval --benchmark chair --model llava-hf/llava-1.5-7b-hf --data ~/coco --out runs/eval/chair

DATA is a COCO 2014 folder: `annotations/` (or DATA itself) with captions_train2014.json, captions_val2014.json,
instances_train2014.json and instances_val2014.json (all four: the ground truth is the union of the segmentation
categories and the objects named in the 5 reference captions, train and val merged as the official scorer does);
images from --images, else DATA/val2014.

There is no single official protocol; a CHAIR number is reproducible only with the same images, prompt, length
limit and variant, so all four are in the results. Defaults follow OPERA's chair_eval.py: `chair_images` (500) images
drawn with `chair_seed` from the sorted val2014 listing (OPERA shuffles an unsorted os.listdir, which no one can
repeat), the prompt "Please describe this image in detail.", at most 512 new tokens, greedy. `chair_image_ids`
names a file of image ids (a JSON list or one per line) to evaluate exactly those instead.

Captions go to OUT/captions.jsonl ({image_id, caption}: the standalone scorer's input). Each variant in
`chair_variants` reports CHAIR_s, CHAIR_i, recall and length (`vlpref.evaluation.scoring.coco_chair`), and
OUT/chair_<variant>.jsonl lists each caption's hallucinated objects. The variants need NLTK (+ its data) and, for
singularize, `pattern`; a missing one stops the run with what to install (the captions are journalled by then, so
the rerun generates nothing). The ground truth of the evaluated images is journalled too: a rerun does not read the
annotation files (~700 MB of JSON) again.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from vlpref.data.files import read_json, write_jsonl
from vlpref.data.schema import Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import Question, Session, greedy
from vlpref.evaluation.scoring import coco_chair
from vlpref.journal import content_key

PROMPT = "Please describe this image in detail."
MAX_NEW_TOKENS = 512
ANNOTATIONS = ("instances_train2014.json", "instances_val2014.json", "captions_train2014.json",
               "captions_val2014.json")
IMAGE_ID = re.compile(r"COCO_val2014_(\d+)\.jpg$")


def _image_ids(session: Session, listing: dict[int, str]) -> list[int]:
    config = session.config
    if config.chair_image_ids:
        path = Path(config.chair_image_ids).expanduser()
        if not path.is_file():
            raise VlprefError(f"chair_image_ids: {path} does not exist")
        text = path.read_text(encoding="utf-8").strip()
        try:
            ids = [int(i) for i in (json.loads(text) if text.startswith("[") else text.split())]
        except (ValueError, TypeError):
            raise VlprefError(f"chair_image_ids: {path} must hold integer image ids (a JSON list or one per line)"
                              ) from None
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:  # each would count twice in CHAIR
            raise VlprefError(f"chair_image_ids: {path}: image id(s) {repeated[:5]} listed more than once")
        unknown = [i for i in ids if i not in listing]
        if unknown:
            raise VlprefError(f"chair_image_ids: {path}: no image file for id(s) {unknown[:5]} in the images folder")
        return ids
    ids = sorted(listing)
    random.Random(config.chair_seed).shuffle(ids)
    return ids[: config.chair_images]


def _truth(session: Session, annotations, ids: list[int], variant: str, words) -> dict[int, set[str]]:
    """Ground truth of `ids` under `variant`, from the journal or computed from the annotation files."""
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in annotations]
    key = content_key("chair-truth", variant, sorted(ids), stamp)
    done = session.journal.get(key)
    if done is None:
        session.log(f"chair: reading the COCO annotations for {len(ids)} images ({variant})")
        data = {p.name: read_json(p, "COCO annotations") for p in annotations}
        truth = words.truth([data[n] for n in ANNOTATIONS[:2]], [data[n] for n in ANNOTATIONS[2:]], ids)
        done = {str(i): sorted(objects) for i, objects in truth.items()}
        session.journal.put(key, done)
    return {int(i): set(objects) for i, objects in done.items()}


def run(session: Session) -> dict:
    config, data = session.config, session.data()
    folder = data / "annotations" if (data / "annotations").is_dir() else data
    annotations = [folder / name for name in ANNOTATIONS]
    missing = [p.name for p in annotations if not p.is_file()]
    if missing:
        raise VlprefError(f"chair: {folder} lacks {', '.join(missing)} (COCO's annotations_trainval2014.zip)")
    for variant in config.chair_variants:
        if variant not in coco_chair.VARIANTS:
            raise VlprefError(f"chair_variants: {variant!r} is not one of {coco_chair.VARIANTS}")
    images = session.images_root("val2014")
    listing = {int(m.group(1)): p.name for p in images.glob("COCO_val2014_*.jpg") if (m := IMAGE_ID.search(p.name))}
    if not listing:
        raise VlprefError(f"chair: no COCO_val2014_*.jpg images in {images}")
    ids = _image_ids(session, listing)

    questions = [Question(f"chair:{i}", [Turn(role="user", text="<image>\n" + PROMPT)], [images / listing[i]],
                          greedy(session.max_new_tokens(MAX_NEW_TOKENS)), source=str(images)) for i in ids]
    captions = list(zip(ids, session.answers(questions), strict=True))
    write_jsonl(session.out / "captions.jsonl", [{"image_id": i, "caption": c} for i, c in captions])

    results: dict = {"images": len(ids), "prompt": PROMPT, "max_new_tokens": session.max_new_tokens(MAX_NEW_TOKENS),
                     "seed": None if config.chair_image_ids else config.chair_seed}
    for variant in config.chair_variants:
        try:
            words = coco_chair.nltk_tools(variant)
        except RuntimeError as error:
            raise VlprefError(f"chair: {error}. The captions are journalled; run again once it is installed, or "
                              "leave the variant out of chair_variants") from None
        truth = _truth(session, annotations, ids, variant, words)
        scores = coco_chair.coco_chair(words, captions, truth)
        hallucinated = scores.pop("hallucinated")
        write_jsonl(session.out / f"chair_{variant}.jsonl",
                    [{"image_id": i, "hallucinated": h} for (i, _), h in zip(captions, hallucinated, strict=True)])
        results[variant] = scores
        for (image_id, _), found in zip(captions, hallucinated, strict=True):
            session.detail(f"chair:{image_id}", **{f"hallucinated ({variant})": ", ".join(found) or "none"})
    return results
