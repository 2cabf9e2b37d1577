"""MT-Bench single-answer grading (FastChat llm_judge): the judge's rating and the per-turn and overall scores
(benchmarks.md §8).

    >>> judge_rating("Clear and correct. Rating: [[9]]")
    9
    >>> judge_rating("I would rate it [7.5] out of 10.")  # no [[x]] anywhere: the single-bracket fallback
    7.5
    >>> judge_rating("Rating: 8/10")  # no bracketed number: the failure value, dropped from every mean
    -1
    >>> rows = [{"model": "m", "question_id": 81, "turn": 1, "score": 9},
    ...         {"model": "m", "question_id": 81, "turn": 2, "score": -1},
    ...         {"model": "m", "question_id": 82, "turn": 2, "score": 6}]
    >>> mtbench_scores(rows)["m"]
    {'turn_1': 9.0, 'turn_2': 6.0, 'average': 7.5, 'judgments': 2, 'failures': 1}

How FastChat scores a model (common.py, show_result.py `display_result_single`):
- Rating: search the judgment for `[[number]]`; if absent anywhere, for `[number]`; the first match is read with
  `ast.literal_eval` (so "9" is 9 and "7.5" is 7.5). No match: -1. Ratings are not clamped to 1-10.
- The judgment file (`model_judgment/<judge>_single.jsonl`) has one line per model, question and turn:
  `{question_id, model, judge: [judge_model, prompt_name], user_prompt, judgment, score, turn, tstamp}`.
- Rows with score -1 are dropped. Turn 1 and turn 2 are averaged separately, and the MT-Bench score is the mean of
  all remaining rows of both turns (not the mean of the two turn means: they differ once failures are dropped).
Neither the doc nor show_result defines a per-category score, so none is computed here.
"""

from __future__ import annotations

import ast
import math
import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

FAILED = -1  # FastChat's rating when the judgment has no bracketed number
# FastChat's two patterns: [[rating]] first, over the whole text; [rating] only when that finds nothing
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")


def judge_rating(judgment: str) -> int | float:
    """The rating in a judge's reply: `[[x]]`, else the first `[x]`, else -1.

    Quirks kept: the fallback takes any bracketed number ("error in step [1]" -> 1); "[[8/10]]", "[[ 8 ]]" -> -1.
    One deviation: FastChat's `literal_eval` raises on "[[07]]" (a leading zero) or non-ASCII digits and the run
    crashes; here those give -1, so they are counted as failures.
    """
    match = RATING.search(judgment) or RATING_FALLBACK.search(judgment)
    if match is None:
        return FAILED
    try:
        return ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return FAILED


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def mtbench_scores(judgments: Sequence[Mapping], *, models: Collection[str] | None = None,
                   question_ids: Collection[int] | None = None) -> dict[str, dict]:
    """Per model: `turn_1`, `turn_2` (None when a turn has no usable rating), `average` (the MT-Bench score),
    `judgments` kept and `failures` dropped (score -1). `judgments` are the judgment file's rows.

    `models` keeps only those models (show_result's --model-list). `question_ids`, if given (the question.jsonl ids),
    rejects rows for any other question. A model, question and turn judged twice is an error: FastChat's mean would
    count it twice.
    """
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: {1: [], 2: []})
    failures: dict[str, int] = defaultdict(int)
    seen = set()
    for i, row in enumerate(judgments):
        model, qid, turn, score = (row.get(k) for k in ("model", "question_id", "turn", "score"))
        where = f"judgment {i} (model {model!r}, question_id {qid!r}, turn {turn!r})"
        if not isinstance(model, str):
            raise ValueError(f"{where}: 'model' must be a string")
        if turn not in (1, 2) or isinstance(turn, bool):
            raise ValueError(f"{where}: 'turn' must be 1 or 2")
        if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
            raise ValueError(f"{where}: 'score' must be a number, got {score!r}")
        if question_ids is not None and qid not in question_ids:
            raise ValueError(f"{where}: question_id is not in the question file")
        if models is not None and model not in models:
            continue
        if (model, qid, turn) in seen:
            raise ValueError(f"{where}: judged more than once")
        seen.add((model, qid, turn))
        per_turn = scores[model]  # created here, so a model whose every rating failed is still reported
        if score == FAILED:
            failures[model] += 1
        else:
            per_turn[turn].append(score)
    out = {}
    for model in sorted(scores):
        turns = scores[model]
        kept = turns[1] + turns[2]
        out[model] = {"turn_1": _mean(turns[1]), "turn_2": _mean(turns[2]), "average": _mean(kept),
                      "judgments": len(kept), "failures": failures[model]}
    return out
