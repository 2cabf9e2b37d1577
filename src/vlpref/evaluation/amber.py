"""AMBER's discriminative task (Wang et al. 2023) from the official repository's data folder (benchmarks.md §7).

    vlpref eval --benchmark amber --model llava-hf/llava-1.5-7b-hf --data AMBER --images AMBER/image \\
        --out runs/eval/amber

DATA is the AMBER repository (or its `data/` folder): `data/annotations.json` (a list indexed by id - 1) and
`data/query/query_discriminative.json` (else `query_all.json`, whose generative items are left out): lists of
{id, image, query}. Images are read from --images, else DATA/image, else DATA/images.

Prompt: the query as given (`official`: "Is there a cloud in this image?"), or with LLaVA's short-answer
instruction "\\nAnswer the question using a single word or phrase." (`llava`, `lmms-eval`). Greedy, at most 128 new
tokens. The official scorer compares the response with exactly "Yes" / "No", so each answer is normalised first:
its first word, stripped of punctuation and capitalised, when that is yes or no; any other answer is kept as it is
and counted in `unparsed` (scored wrong, as officially). Both files are written: OUT/answers_raw.json (the model's
text) and OUT/answers.json (normalised, the official response layout [{id, response}]), which `vlpref eval score
--benchmark amber --answers OUT/answers.json --metadata data/annotations.json` reads.

Results (`vlpref.numerics.amber`): accuracy, precision, recall and F1 (positive class "No", ×100) overall, per
dimension (existence, attribute, relation) and per attribute type. The generative task (CHAIR / Cover / Hal / Cog)
needs NLTK's tagger and lemmatizer and spaCy's en_core_web_lg, which this command does not run; score its responses
with the official inference.py, then combine with `vlpref.numerics.amber.amber_score`.
"""

from __future__ import annotations

import json
import re

from vlpref.data.schema import Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import Question, Session, greedy, read_json
from vlpref.numerics.amber import amber_discriminative

SUFFIX = "\nAnswer the question using a single word or phrase."
MAX_NEW_TOKENS = 128


def normalise(text: str) -> str:
    """'yes, there is.' -> 'Yes'; ' No.' -> 'No'; anything whose first word is not yes/no stays as it is."""
    words = text.strip().split()
    first = re.sub(r"[^a-z]", "", words[0].lower()) if words else ""
    return first.capitalize() if first in ("yes", "no") else text


def run(session: Session) -> dict:
    config = session.config
    data = session.data() / "data" if (session.data() / "data").is_dir() else session.data()
    annotations = read_json(data / "annotations.json", "amber annotations")
    query_file = next((data / "query" / name for name in ("query_discriminative.json", "query_all.json")
                       if (data / "query" / name).is_file()), None)
    if query_file is None:
        raise VlprefError(f"amber: no query/query_discriminative.json or query/query_all.json in {data}")
    queries = read_json(query_file, "amber query file")
    for i, q in enumerate(queries):
        missing = [k for k in ("id", "image", "query") if k not in q]
        if missing:
            raise VlprefError(f"amber: {query_file}, item {i}: no {missing[0]!r} field")
        if not isinstance(q["id"], int) or not 1 <= q["id"] <= len(annotations):
            raise VlprefError(f"amber: {query_file}, item {i}: id {q['id']!r} is not in annotations.json "
                              f"(1..{len(annotations)})")
    queries = session.limited([q for q in queries if annotations[q["id"] - 1].get("type") != "generative"])
    images = session.images_root("image")
    if images == session.data() and (session.data() / "images").is_dir():
        images = session.data() / "images"

    questions = [Question(f"amber:{q['id']}", [Turn(role="user", text="<image>\n" + (
        q["query"] if config.style == "official" else q["query"] + SUFFIX))], [images / q["image"]],
        greedy(session.max_new_tokens(MAX_NEW_TOKENS)), source=str(query_file)) for q in queries]
    answers = session.answers(questions)
    raw = [{"id": q["id"], "response": a} for q, a in zip(queries, answers, strict=True)]
    normalised = [{"id": r["id"], "response": normalise(r["response"])} for r in raw]
    (session.out / "answers_raw.json").write_text(json.dumps(raw, indent=1, ensure_ascii=False), encoding="utf-8")
    (session.out / "answers.json").write_text(json.dumps(normalised, indent=1, ensure_ascii=False), encoding="utf-8")
    try:
        results = amber_discriminative(normalised, annotations)
    except ValueError as error:
        raise VlprefError(f"amber: {error}") from None
    return {"discriminative": results, "style": config.style}
