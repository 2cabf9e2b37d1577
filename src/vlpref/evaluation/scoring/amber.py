"""AMBER (Wang et al., 2023): generative CHAIR/Cover/Hal/Cog, discriminative Acc/P/R/F1 and the AMBER score
(benchmarks.md §7; official scorer junyangwang0410/AMBER `inference.py`).

    >>> association = {"dog": ["puppy"], "cat": ["kitten"], "grass": []}
    >>> item = generative_item(["puppy", "kitten", "sky"], truth=["dog"], hallu=["cat"], association=association)
    >>> item  # 'sky' is outside relation.json; 'puppy' covers dog; 'kitten' is hallucinated and covers cat
    {'nouns': 2, 'hallucinated': 1, 'truth_covered': 1, 'truth_total': 1, 'hallu_covered': 1, 'hallu_total': 1}
    >>> generative_metrics([item])  # every denominator starts at 0.001: Cover = 1 / 1.001 -> 99.9, not 100
    {'chair': 50.0, 'cover': 99.9, 'hal': 100.0, 'cog': 99.9, 'items': 1}
    >>> round(amber_score(chair=7.8, f1=74.7), 1)  # the README's LLaVA-1.5 row
    83.5

Generative task, per response of a `generative` annotation (`truth` objects, hallucination-prone `hallu` objects):
1. Nouns: NLTK tokens tagged NN*, WordNet-lemmatized. We have neither NLTK nor its data, so every function here
   takes those already-extracted nouns (in order, duplicates kept) instead of the response text.
2. Keep the nouns that occur in relation.json (its keys and all their associated words). safe_words.txt words are
   then skipped: never hallucinated, covering nothing, but still counted among the kept nouns (CHAIR's denominator).
3. A noun equal to a truth object or one of its associated words covers that object and is fine. Any other noun
   covers the `hallu` object (Cog) it equals or is associated with, and is hallucinated unless it is *similar* to a
   truth word, which it then covers. *Similar* (also tried against the hallu words, for Cog) is spaCy
   `en_core_web_lg` similarity > 0.8 in the official scorer; we have no spaCy, so pass `similar(noun, word)`, or
   leave it None for exact matching only (lower Cover and Cog, higher CHAIR and Hal than the official numbers
   wherever a near-synonym would have matched; lmms-eval's fallback to smaller spaCy models shifts them too).
4. CHAIR = hallucinated / kept nouns; Cover = covered truth / truth objects; Hal = 100 − % responses with no
   hallucinated noun; Cog = covered hallu / hallu objects. Each ×100, rounded to 1 decimal.

Discriminative task: the response must be exactly "Yes" or "No" (case-sensitive, whole string: normalise before
scoring; anything else is wrong and is counted in `unparsed`). "No" is the positive class. F1 is computed from
precision and recall already rounded to 1 decimal, with +0.0001 in the denominator (+0.001 for existence).

Every count denominator starts at 0.001, as the official metrics.txt initialises it (attribute pools three
sub-type counters, so +0.003); the counters are accumulated item by item in input order so the floats, and so the
rounding, agree with the official script. With no items a metric is 0.0, as there, instead of a division error.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

START = 0.001  # the official counters' initial value (data/metrics.txt), which keeps empty splits from dividing by 0
EXISTENCE = "discriminative-hallucination"
SUBTYPES = {"discriminative-attribute-state": "state", "discriminative-attribute-number": "number",
            "discriminative-attribute-action": "action"}
RELATION = ("discriminative-relation", "relation")  # both are scored as relation


def object_vocabulary(association: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """relation.json's keys and associated words: the only nouns the generative metrics look at."""
    return frozenset(association).union(*association.values())


def _lookup(objects: Sequence[str], association: Mapping[str, Sequence[str]], field: str) -> list[tuple[str, int]]:
    # (word, object index): every object's associated words first, then the objects themselves, in the official
    # order, so that a word listed under two objects credits the same one as there (first match wins)
    pairs = []
    for k, obj in enumerate(objects):
        if obj not in association:
            raise ValueError(f"{field} object {obj!r} has no entry in relation.json")
        pairs += [(word, k) for word in association[obj]]
    return pairs + [(obj, k) for k, obj in enumerate(objects)]


def _first(pairs: list[tuple[str, int]], noun: str, similar: Callable[[str, str], bool] | None = None) -> int | None:
    # the object index of the first word equal to (or, given `similar`, similar to) the noun
    return next((k for word, k in pairs if (similar(noun, word) if similar else noun == word)), None)


def generative_item(nouns: Sequence[str], truth: Sequence[str], hallu: Sequence[str],
                    association: Mapping[str, Sequence[str]], *, safe_words: Collection[str] = (),
                    similar: Callable[[str, str], bool] | None = None,
                    vocabulary: Collection[str] | None = None) -> dict[str, int]:
    """Counts for one response: `nouns` are its extracted, lemmatized nouns; `truth` and `hallu` its annotation.

    `similar(noun, word)` stands in for the official spaCy similarity test (None: exact matches only);
    `vocabulary` defaults to `object_vocabulary(association)` (pass it precomputed when scoring many items).
    """
    words = object_vocabulary(association) if vocabulary is None else vocabulary
    truth_words = _lookup(truth, association, "truth")
    hallu_words = _lookup(hallu, association, "hallu")
    truth_hit, hallu_hit = set(), set()
    kept = [n for n in nouns if n in words]
    hallucinated = 0
    for noun in kept:
        if noun in safe_words:  # counted among the kept nouns, never hallucinated, covers nothing
            continue
        k = _first(truth_words, noun)
        if k is not None:
            truth_hit.add(k)
            continue
        k = _first(hallu_words, noun)
        if k is not None:
            hallu_hit.add(k)
        if similar is not None:  # the official order: the hallu words first (Cog), then the truth words
            k = _first(hallu_words, noun, similar)
            if k is not None:
                hallu_hit.add(k)
            k = _first(truth_words, noun, similar)
            if k is not None:  # a near-synonym of a truth object: covers it and is not a hallucination
                truth_hit.add(k)
                continue
        hallucinated += 1
    return {"nouns": len(kept), "hallucinated": hallucinated, "truth_covered": len(truth_hit),
            "truth_total": len(truth), "hallu_covered": len(hallu_hit), "hallu_total": len(hallu)}


def generative_metrics(items: Iterable[Mapping[str, int]]) -> dict[str, float]:
    """CHAIR, Cover, Hal, Cog (×100, 1 decimal) over the `generative_item` counts of the responses."""
    nouns = truth_total = hallu_total = responses = START
    hallucinated = truth_covered = hallu_covered = clean = n = 0
    for item in items:
        nouns += item["nouns"]
        hallucinated += item["hallucinated"]
        truth_total += item["truth_total"]
        truth_covered += item["truth_covered"]
        hallu_total += item["hallu_total"]
        hallu_covered += item["hallu_covered"]
        clean += item["hallucinated"] == 0
        responses += 1
        n += 1
    return {"chair": round(hallucinated / nouns * 100, 1), "cover": round(truth_covered / truth_total * 100, 1),
            "hal": round(100 - clean / responses * 100, 1), "cog": round(hallu_covered / hallu_total * 100, 1),
            "items": n}


def _annotation(annotations: Sequence[Mapping], item_id, where: str) -> Mapping:
    # annotations.json is a list indexed by id - 1
    if isinstance(item_id, bool) or not isinstance(item_id, int) or not 1 <= item_id <= len(annotations):
        raise ValueError(f"{where}: id {item_id!r} is not in 1..{len(annotations)} (annotations.json is indexed id-1)")
    return annotations[item_id - 1]


def amber_generative(nouns_by_id: Mapping[int, Sequence[str]], annotations: Sequence[Mapping],
                     association: Mapping[str, Sequence[str]], *, safe_words: Collection[str] = (),
                     similar: Callable[[str, str], bool] | None = None) -> dict[str, float]:
    """Generative metrics of a run: `nouns_by_id` maps each response id to its extracted nouns; `annotations` is
    annotations.json, `association` relation.json, `safe_words` the lines of safe_words.txt."""
    vocabulary = object_vocabulary(association)
    safe = frozenset(safe_words)
    items = []
    for item_id, nouns in nouns_by_id.items():
        entry = _annotation(annotations, item_id, "generative response")
        if entry.get("type") != "generative":
            raise ValueError(f"id {item_id} is a {entry.get('type')!r} annotation, not a generative one")
        items.append(generative_item(nouns, entry["truth"], entry["hallu"], association, safe_words=safe,
                                     similar=similar, vocabulary=vocabulary))
    return generative_metrics(items)


def _dimension(counters: Sequence[dict], eps: float) -> dict[str, float]:
    # pools sub-type counters left to right, each carrying its own START, as the official attribute row does
    total, correct, truth_no, pred_no, true_no, n, unparsed = (
        sum(c[k] for c in counters) for k in ("total", "correct", "truth_no", "pred_no", "true_no", "n", "unparsed"))
    precision = round(true_no / pred_no * 100, 1)
    recall = round(true_no / truth_no * 100, 1)
    f1 = round(2 * (precision / 100) * (recall / 100) / ((precision / 100) + (recall / 100) + eps) * 100, 1)
    return {"accuracy": round(correct / total * 100, 1), "precision": precision, "recall": recall, "f1": f1,
            "n": n, "unparsed": unparsed}


def _counter() -> dict:
    return {"total": START, "correct": 0, "truth_no": START, "pred_no": START, "true_no": 0, "n": 0, "unparsed": 0}


def amber_discriminative(responses: Sequence[Mapping], annotations: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Accuracy, precision, recall, F1 (×100, 1 decimal; positive class "No"), `n` and `unparsed` (responses other
    than exactly "Yes"/"No") for 'overall', 'existence', 'attribute', 'relation' and the attribute sub-types
    'state', 'number', 'action'. `responses` is the official response file ([{"id", "response"}]); responses to
    generative annotations are skipped, so the whole file can be passed. The reported F1 is `["overall"]["f1"]`."""
    buckets = {name: _counter() for name in ("overall", "existence", "state", "number", "action", "relation")}
    seen = set()
    for record in responses:
        item_id, response = record.get("id"), record.get("response")
        entry = _annotation(annotations, item_id, "response")
        kind = entry.get("type")
        if kind == "generative":
            continue
        if item_id in seen:  # the official script would count it twice
            raise ValueError(f"id {item_id} has more than one response")
        seen.add(item_id)
        if not isinstance(response, str):
            raise ValueError(f"id {item_id}: 'response' must be a string, got {response!r}")
        truth = entry.get("truth")
        if truth not in ("yes", "no"):
            raise ValueError(f"id {item_id}: annotation truth must be 'yes' or 'no', got {truth!r}")
        if kind == EXISTENCE:
            name = "existence"
        elif kind in SUBTYPES:
            name = SUBTYPES[kind]
        elif kind in RELATION:
            name = "relation"
        else:
            raise ValueError(f"id {item_id}: unknown annotation type {kind!r}")
        for c in (buckets["overall"], buckets[name]):
            c["n"] += 1
            c["total"] += 1
            c["truth_no"] += truth == "no"
            c["pred_no"] += response == "No"
            c["correct"] += response == ("Yes" if truth == "yes" else "No")
            c["true_no"] += response == "No" and truth == "no"
            c["unparsed"] += response not in ("Yes", "No")
    out = {"overall": _dimension([buckets["overall"]], 0.0001),
           "existence": _dimension([buckets["existence"]], 0.001),  # the official existence row uses 0.001
           "attribute": _dimension([buckets["state"], buckets["number"], buckets["action"]], 0.0001),
           "relation": _dimension([buckets["relation"]], 0.0001)}
    for name in ("state", "number", "action"):
        out[name] = _dimension([buckets[name]], 0.0001)
    return out


def amber_score(chair: float, f1: float) -> float:
    """(100 − CHAIR + F1) / 2 with the generative CHAIR and the overall discriminative F1, both as reported (×100).

    Not in the official code; the README table confirms it arithmetically. Unrounded: the table shows 1 decimal."""
    return (100 - chair + f1) / 2
