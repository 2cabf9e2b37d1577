"""`vlpref pairs --strategy …`: each paper's preference pairs from prompts, candidates and annotations.

    vlpref pairs --strategy vlfeedback --annotations runs/judged --out runs/pairs
    vlpref pairs --strategy helpsteer --annotations runs/judged --out runs/pairs      # + rejection-sampling, steerlm
    vlpref pairs --strategy seva --candidates runs/cands-noised --out runs/pairs
    vlpref pairs --strategy povid --out runs/pairs                                   # world prefs prompts, injector
    vlpref pairs --strategy image-contrast --out runs/pairs                          # mDPO's corrupted images

What each strategy reads:
- `vlfeedback`, `helpsteer`: an annotations folder (which names its candidates and prompts in meta.json).
- `seva`: a candidates folder sampled with `augment` set, holding each model's answers on the original and on the
  augmented images.
- `povid`, `image-contrast`: a prompts folder with reference answers (default: the world's prefs split). POVID's
  rejected answers come from the hallucination injector (the world's, offline); the image-contrast pairs take the
  reference as both responses and corrupt the images (`augment`, default mDPO's crop).

Everything a strategy did not turn into a pair is written to out/skipped.jsonl with its reason, and counted.
The rule functions live in `vlpref.pairs.strategies`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlpref.candidates.sample import augmented_images, resolve_prompts
from vlpref.config import StrictModel
from vlpref.data.augment import AugmentConfig
from vlpref.data.images import place_image, record_image_digests, resolve_image
from vlpref.data.schema import Annotation, Candidate, PreferencePair, Prompt
from vlpref.data.store import read_meta, read_records, write_records
from vlpref.errors import ConfigError, VlprefError
from vlpref.journal import Journal, content_key
from vlpref.pairs import strategies as rules
from vlpref.pairs.inject import InjectorConfig

STRATEGIES = ("vlfeedback", "helpsteer", "seva", "povid", "image-contrast")


class PairsConfig(StrictModel):
    recipe: Literal["pairs"] = "pairs"
    strategy: Literal["vlfeedback", "helpsteer", "seva", "povid", "image-contrast"] = "vlfeedback"
    annotations: str | None = Field(default=None, description="annotations folder (vlfeedback, helpsteer)")
    candidates: str | None = Field(default=None, description="candidates folder (seva; default: the annotations')")
    prompts: str | None = Field(default=None, description="prompts folder; default: the one the inputs name, "
                                "or the world's prefs split (povid, image-contrast)")
    margin: float = Field(default=0.0, ge=0.0, description="vlfeedback: drop pairs whose mean ratings differ less")
    injection_kinds: list[Literal["object", "attribute", "relation"]] = Field(
        default_factory=lambda: ["object", "attribute", "relation"],
        description="povid: one pair per prompt and kind the answer allows (yes/no answers are flipped instead)")
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig(op="mdpo-crop"),
                                   description="image-contrast: how the rejected images are corrupted")
    injector: InjectorConfig = Field(default_factory=InjectorConfig,
                                     description="povid: who rewrites the ground truth (default: the world's injector)")
    world_images: int = Field(default=10, ge=1, description="scenes of the world prefs split, when prompts is none")
    seed: int = 0


def _group(items, key) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in items:
        out.setdefault(getattr(item, key), []).append(item)
    return out


def build_pairs(config: PairsConfig, out: str | Path, log=print) -> list[PreferencePair]:
    out = Path(out)
    rng = random.Random(config.seed)
    pairs: list[PreferencePair] = []
    skipped: list[rules.Skip] = []
    extra: dict[str, list[Prompt]] = {}  # helpsteer's SFT sets
    meta_in: dict[str, str] = {}

    if config.strategy in ("vlfeedback", "helpsteer"):
        if config.annotations is None:
            raise ConfigError(f"strategy {config.strategy} needs annotations (run `vlpref judge` first)")
        annotations: list[Annotation] = read_records(config.annotations)
        meta = read_meta(config.annotations)
        candidates_dir = Path(config.candidates or meta["candidates"])
        prompts_dir = Path(config.prompts or meta["prompts"])
        prompts: list[Prompt] = read_records(prompts_dir)
        candidates = _group(read_records(candidates_dir), "prompt_id")
        by_prompt = _group(annotations, "prompt_id")
        meta_in = {"annotations": str(Path(config.annotations).resolve()), "candidates": str(candidates_dir.resolve())}
        if config.strategy == "helpsteer":
            extra = {"rejection-sampling": [], "steerlm": []}
        for prompt in prompts:
            mine, rated = candidates.get(prompt.id, []), by_prompt.get(prompt.id, [])
            if not mine:
                continue
            if config.strategy == "vlfeedback":
                made, why = rules.vlfeedback_pairs(prompt, mine, rated, margin=config.margin)
            else:
                made, why = rules.helpsteer_pairs(prompt, mine, rated, rng)
                # an empty answer can be a pair's rejected side, but it is nothing to fine-tune on
                targets = [c for c in mine if c.text.strip()]
                why += [rules.Skip(prompt.id, "empty response: no SFT target for rejection sampling or SteerLM",
                                   c.id) for c in mine if not c.text.strip()]
                best = rules.best_response(prompt, targets, rated)
                if best is not None:
                    extra["rejection-sampling"].append(best)
                by_id = {a.candidate_id: a for a in rated}
                extra["steerlm"].extend(r for c in targets if c.id in by_id
                                        and (r := rules.steerlm_record(prompt, c, by_id[c.id])) is not None)
            pairs.extend(made)
            skipped.extend(why)

    elif config.strategy == "seva":
        if config.candidates is None:
            raise ConfigError("strategy seva needs candidates sampled with `augment` set (vlpref sample)")
        candidates_dir = Path(config.candidates)
        prompts_dir = Path(config.prompts or read_meta(candidates_dir)["prompts"])
        prompts = read_records(prompts_dir)
        by_prompt = _group(read_records(candidates_dir), "prompt_id")
        meta_in = {"candidates": str(candidates_dir.resolve())}
        for prompt in prompts:
            mine: list[Candidate] = by_prompt.get(prompt.id, [])
            originals = {(c.model_id, c.id.rsplit("/", 1)[1]): c for c in mine if c.images is None}
            for c in mine:
                if c.images is None:
                    continue
                index = c.id.rsplit("/", 1)[1].rsplit("-", 1)[1]
                original = originals.get((c.model_id, index))
                if original is None:
                    skipped.append(rules.Skip(prompt.id, "no answer on the original image to pair with", c.id))
                    continue
                made = rules.seva_pair(prompt, original, c)
                if isinstance(made, rules.Skip):
                    skipped.append(made)
                else:
                    pairs.append(made.model_copy(update={"id": f"{prompt.id}/{c.model_id}/{index}"}))
            if not any(c.images is not None for c in mine) and mine:
                skipped.append(rules.Skip(prompt.id, "no answer on augmented images (sample with augment set)"))

    else:  # povid, image-contrast: from prompts with reference answers
        prompts_dir = resolve_prompts(config.prompts, out, config.world_images, config.seed)
        prompts = read_records(prompts_dir)
        if config.strategy == "povid":
            made, why = _povid(config, prompts, prompts_dir, out, log)
            pairs.extend(made)
            skipped.extend(why)
        else:
            for prompt in prompts:
                if prompt.reference is None or not prompt.images:
                    skipped.append(rules.Skip(prompt.id, "needs images and a reference answer"))
                    continue
                corrupted = augmented_images(prompt, prompts_dir, out, config.augment)
                pairs.append(rules.image_contrast_pair(prompt, prompt.reference, corrupted, config.augment.tag()))

    _write(out, config, pairs, skipped, extra, prompts_dir, meta_in, log)
    return pairs


def _povid(config: PairsConfig, prompts: list[Prompt], root: Path, out: Path, log):
    """Chosen = ground truth; rejected = each allowed injection kind (yes/no answers are flipped exactly)."""
    pairs, skipped, asks = [], [], []
    for prompt in prompts:
        if prompt.reference is None:
            skipped.append(rules.Skip(prompt.id, "no ground-truth answer"))
            continue
        yes_no = prompt.reference.strip().lower().rstrip(".") in ("yes", "no")
        if yes_no:
            flipped = "No." if prompt.reference.strip().lower().startswith("yes") else "Yes."
            pairs.append(rules.povid_pair(prompt, flipped, "flip", "answer flipped"))
            continue
        asks.extend((prompt, kind) for kind in config.injection_kinds)
    if config.injector.backend == "world":
        from vlpref.world.inject import WorldInjector

        injector = WorldInjector(seed=config.seed)
        for prompt, kind in asks:
            try:
                injection = injector.inject(prompt, prompt.reference, kind=kind)
            except ValueError:  # e.g. no relation can be added to a one-object answer
                skipped.append(rules.Skip(prompt.id, f"the answer allows no {kind} injection"))
                continue
            made = rules.povid_pair(prompt, injection.text, injection.kind, injection.detail)
            (skipped if isinstance(made, rules.Skip) else pairs).append(made)
        return pairs, skipped
    # A chat model rewrites: each call is journalled, so a rerun repeats none that finished.
    from vlpref.models.remote import Failure
    from vlpref.pairs.inject import ChatInjector, kind_for

    journal = Journal(out / "journal.sqlite")
    injector = ChatInjector(config.injector)
    # Reasoning items get one rewrite whatever kinds were asked: one request and one pair, not three.
    unique: dict[tuple[str, str], tuple[Prompt, str]] = {}
    for p, k in asks:
        unique.setdefault((p.id, kind_for(p, k)), (p, kind_for(p, k)))
    asks = list(unique.values())
    ident = [config.injector.injector_id(), injector.prompt.model_dump(), config.injector.show_image,
             config.injector.decoding.model_dump()]
    keys = [content_key("inject", ident, p.model_dump(), k, record_image_digests(root, p)) for p, k in asks]
    todo = [i for i, key in enumerate(keys) if journal.get(key) is None]
    log(f"pairs (povid): {len(asks)} rewrites, {len(asks) - len(todo)} already done, {len(todo)} to request")
    failed = []

    def landed(j: int, result) -> None:  # journalled the moment it lands
        i = todo[j]
        if isinstance(result, Failure):
            journal.fail(keys[i], result.reason)
            failed.append(result.reason)
        else:
            journal.put(keys[i], result)

    if todo:
        injector.inject_many([asks[i] for i in todo], root, on_done=landed)
    for (prompt, kind), key in zip(asks, keys, strict=True):
        text = journal.get(key)
        if text is not None:
            made = rules.povid_pair(prompt, text, kind, f"rewritten by {ident[0]}")
            (skipped if isinstance(made, rules.Skip) else pairs).append(made)
    journal.close()
    if failed:
        raise VlprefError(f"{len(failed)} rewrite request(s) failed (first: {failed[0]}); run again to retry them")
    return pairs, skipped


def _write(out: Path, config: PairsConfig, pairs, skipped, extra, prompts_dir: Path, meta_in: dict, log) -> None:
    meta = {"prompts": str(prompts_dir.resolve()), **meta_in, "config": config.model_dump(),
            "config_hash": content_key(config.model_dump())}
    # Pairs name the prompt's images (relative to the prompts folder): they are placed here, so the folder stands
    # alone. Image-contrast pairs also name their corrupted images, which are already written under `out`.
    if config.strategy == "image-contrast":
        for pair in pairs:
            for relative in pair.images:
                place_image(resolve_image(prompts_dir, relative), out, relative)
    write_records(out, "pairs", pairs, images_from=None if config.strategy == "image-contrast" else prompts_dir,
                  **meta)
    with (out / "skipped.jsonl").open("w") as f:
        for s in skipped:
            f.write(json.dumps(asdict(s)) + "\n")
    for name, records in extra.items():
        write_records(out / name, "prompts", records, images_from=prompts_dir, **meta)
    reasons = Counter(s.reason.split(" (")[0] for s in skipped)
    log(f"pairs ({config.strategy}): {len(pairs)} pairs, {len(skipped)} skipped"
        + "".join(f"\n  {n} x {r}" for r, n in reasons.most_common())
        + "".join(f"\n  {name}: {len(records)} SFT records in {out / name}" for name, records in extra.items()))
