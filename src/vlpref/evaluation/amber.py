"""AMBER (Wang et al. 2023), both tasks, from the official repository's data folder (benchmarks.md §7).

    vlpref eval --benchmark amber --model llava-hf/llava-1.5-7b-hf --data AMBER --images AMBER/image \\
        --out runs/eval/amber

DATA is the AMBER repository (or its `data/` folder): `data/annotations.json` (a list indexed by id - 1),
`data/query/query_all.json` (else query_discriminative.json / query_generative.json): lists of {id, image, query};
for the generative task also `data/relation.json` and `data/safe_words.txt`. Images are read from --images, else
DATA/image, else DATA/images. `amber_tasks` picks the tasks (both by default).

Discriminative ("Is there a cloud in this image?"): the query as given (`official`), or with LLaVA's short-answer
instruction "\\nAnswer the question using a single word or phrase." (`llava`, `lmms-eval`). Greedy, at most 128
new tokens. The official scorer compares the response with exactly "Yes" / "No", so each answer is normalised
first: its first word, stripped of punctuation and capitalised, when that is yes or no; any other answer is kept as
it is and counted in `unparsed` (scored wrong, as officially). Accuracy, precision, recall and F1 (positive class
"No", ×100) overall, per dimension (existence, attribute, relation) and per attribute type.

Generative ("Describe this image."): the query as given, greedy, at most 512 new tokens. Nouns are extracted as the
official inference.py does (NLTK tokens tagged NN*, WordNet-lemmatized; NLTK and its punkt_tab, tagger and wordnet
data must be installed) and matched against the annotation with spaCy `en_core_web_lg` similarity > 0.8 when that
model is installed; without it only exact matches count (CHAIR and Hal come out higher, Cover and Cog lower than
the official numbers), and `similarity` in the results says which ran. CHAIR, Cover, Hal, Cog (×100), and the
AMBER score (100 − CHAIR + F1) / 2 when both tasks ran.

Files: OUT/answers_raw.json (the model's text) and OUT/answers.json (discriminative answers normalised; the
official response layout [{id, response}], which the official inference.py and `vlpref eval score --benchmark
amber --answers OUT/answers.json --metadata data/annotations.json` read).
"""

from __future__ import annotations

import json
import re

from vlpref.data.files import read_json
from vlpref.data.schema import Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import Question, Session, greedy
from vlpref.evaluation.scoring.amber import amber_discriminative, amber_generative, amber_score

SUFFIX = "\nAnswer the question using a single word or phrase."
MAX_NEW_TOKENS = {"discriminative": 128, "generative": 512}
SIMILARITY = 0.8  # the official --similarity_score


def normalise(text: str) -> str:
    """'yes, there is.' -> 'Yes'; ' No.' -> 'No'; anything whose first word is not yes/no stays as it is."""
    words = text.strip().split()
    first = re.sub(r"[^a-z]", "", words[0].lower()) if words else ""
    return first.capitalize() if first in ("yes", "no") else text


def nltk_nouns():
    """The official noun extraction (NLTK tokens tagged NN*, WordNet-lemmatized); RuntimeError naming what to
    install when NLTK or its data is missing."""
    try:
        import nltk
        from nltk.stem import WordNetLemmatizer
    except ImportError:
        raise RuntimeError("AMBER's generative task needs NLTK: pip install nltk") from None
    for resource in ("tokenizers/punkt_tab", "taggers/averaged_perceptron_tagger_eng", "corpora/wordnet"):
        try:
            nltk.data.find(resource)
        except LookupError:
            name = resource.rsplit("/", 1)[-1]
            raise RuntimeError(f"AMBER's generative task needs NLTK data {name!r}: python -m nltk.downloader {name}"
                               ) from None
    lemmatizer = WordNetLemmatizer()
    return lambda text: [lemmatizer.lemmatize(w) for w, tag in nltk.pos_tag(nltk.word_tokenize(text))
                         if tag.startswith("NN")]


def spacy_similar():
    """(similar(noun, word), label): spaCy en_core_web_lg similarity > 0.8, as officially; else exact matches only."""
    try:
        import spacy

        nlp = spacy.load("en_core_web_lg")
    except (ImportError, OSError):
        return None, "exact match only (spaCy en_core_web_lg is not installed)"
    return (lambda a, b: nlp(a).similarity(nlp(b)) > SIMILARITY), f"spaCy en_core_web_lg > {SIMILARITY}"


def _queries(session: Session, data, annotations) -> tuple[list[dict], str]:
    """query_all.json, else the per-task files of the tasks asked for (both must then exist)."""
    folder = data / "query"
    if (folder / "query_all.json").is_file():
        files = [folder / "query_all.json"]
    else:
        files = [folder / f"query_{task}.json" for task in session.config.amber_tasks]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise VlprefError(f"amber: neither query_all.json nor {', '.join(missing)} in {folder} "
                              "(or set amber_tasks to the tasks you have)")
    queries = []
    for query_file in files:
        items = read_json(query_file, "amber query file")
        for i, q in enumerate(items):
            missing = [k for k in ("id", "image", "query") if k not in q]
            if missing:
                raise VlprefError(f"amber: {query_file}, item {i}: no {missing[0]!r} field")
            if not isinstance(q["id"], int) or not 1 <= q["id"] <= len(annotations):
                raise VlprefError(f"amber: {query_file}, item {i}: id {q['id']!r} is not in annotations.json "
                                  f"(1..{len(annotations)})")
        queries += items
    return queries, ", ".join(str(f) for f in files)


def run(session: Session) -> dict:
    config = session.config
    data = session.data() / "data" if (session.data() / "data").is_dir() else session.data()
    annotations = read_json(data / "annotations.json", "amber annotations")
    queries, source = _queries(session, data, annotations)
    images = session.images_root("image")
    if images == session.data() and (session.data() / "images").is_dir():
        images = session.data() / "images"

    def task(q: dict) -> str:
        return "generative" if annotations[q["id"] - 1].get("type") == "generative" else "discriminative"

    results: dict = {"style": config.style}
    raw: list[dict] = []
    for name in ("discriminative", "generative"):
        chosen = session.limited([q for q in queries if task(q) == name]) if name in config.amber_tasks else []
        if not chosen:
            continue
        suffix = SUFFIX if name == "discriminative" and config.style != "official" else ""
        questions = [Question(f"amber:{q['id']}", [Turn(role="user", text="<image>\n" + q["query"] + suffix)],
                              [images / q["image"]], greedy(session.max_new_tokens(MAX_NEW_TOKENS[name])),
                              source=source) for q in chosen]
        answers = [{"id": q["id"], "response": a} for q, a in zip(chosen, session.answers(questions), strict=True)]
        for q in chosen:
            truth = annotations[q["id"] - 1].get("truth")
            session.detail(f"amber:{q['id']}", task=name, reference=truth if isinstance(truth, str) else
                           ", ".join(truth or []))
        raw += answers
        (session.out / "answers_raw.json").write_text(json.dumps(raw, indent=1, ensure_ascii=False), "utf-8")
        if name == "discriminative":
            normalised = [{"id": r["id"], "response": normalise(r["response"])} for r in answers]
            (session.out / "answers.json").write_text(json.dumps(normalised, indent=1, ensure_ascii=False), "utf-8")
            try:
                results[name] = amber_discriminative(normalised, annotations)
            except ValueError as error:
                raise VlprefError(f"amber: {error}") from None
        else:
            results[name] = _generative(session, data, annotations, answers)
    if "discriminative" in results and "generative" in results:
        results["amber_score"] = amber_score(results["generative"]["chair"], results["discriminative"]["overall"]["f1"])
    return results


def _generative(session: Session, data, annotations, answers: list[dict]) -> dict:
    association = read_json(data / "relation.json", "amber relation.json")
    safe_path = data / "safe_words.txt"
    if not safe_path.is_file():
        raise VlprefError(f"amber: {safe_path} does not exist")
    safe_words = [line.split("\n")[0] for line in safe_path.read_text(encoding="utf-8").splitlines()]
    try:
        nouns = nltk_nouns()
    except RuntimeError as error:
        raise VlprefError(f"amber: {error}. The answers are journalled; run again once it is installed, or set "
                          "amber_tasks: [discriminative]") from None
    similar, label = spacy_similar()
    try:
        metrics = amber_generative({r["id"]: nouns(r["response"]) for r in answers}, annotations, association,
                                   safe_words=safe_words, similar=similar)
    except ValueError as error:
        raise VlprefError(f"amber: {error}") from None
    return {**metrics, "similarity": label}
