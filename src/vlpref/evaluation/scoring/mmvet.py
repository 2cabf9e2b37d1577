"""MM-Vet (Yu et al.): grader-output parsing and the official total, per-capability and per-combination scores
(benchmarks.md §4).

    >>> mmvet_parse_grade("0.7"), mmvet_parse_grade("1.0 (the"), mmvet_parse_grade("Correct"), mmvet_parse_grade("1.5")
    (0.7, 1.0, None, None)
    >>> caps = {"v1_0": ["rec"], "v1_1": ["ocr", "math"], "v1_2": ["rec", "ocr"]}
    >>> out = mmvet_scores(caps, {"v1_0": 1.0, "v1_1": 0.5, "v1_2": 0.0})
    >>> out["total"], out["per_capability"]["ocr"], out["per_combination"]["ocr_math"]   # 100·1.5/3, 100·0.5/2, 50
    (50.0, 25.0, 50.0)

Official protocol (`yuweihao/MM-Vet` `mm-vet_evaluator.py`):
- Grader: gpt-4-0613, max_tokens 3, temperature 0, one user message: the few-shot grading prompt, then "\\n" and
  the row `question | ground truth | prediction | ` (`mmvet_grader_query`). In the ground truth '<AND>' and '<OR>'
  are padded with spaces first (`mmvet_pad_answer`). The grading prompt itself is not shipped here (benchmarks.md
  gives it only paraphrased): copy it verbatim from the official file and pass it in.
- Parsing (`mmvet_parse_grade`): the text before the first single space, stripped, must be a float in [0, 1].
- Retries: an invalid output triggers a new request whose message ends with `MMVET_RETRY_SUFFIX`; the temperature
  grows by 0.5 after each such request (so the first re-query still runs at 0.0). At most `MMVET_MAX_TRIES` (5)
  outputs are read; after 5 invalid ones the score is 0.0 (the script even fetches a 6th answer it never reads).
  `mmvet_final_score` applies this rule to the outputs of one item. Rate-limit errors just wait and retry and are
  not tries.
- Scores, ×100: total = Σ score / number of samples (218 for the full set); per capability c = Σ score over the
  samples whose capability set contains c / their number, so a sample with several capabilities counts fully in
  each; per combination = the same grouped by the exact capability set. With several runs (the paper used 5) each
  number is the mean over runs, `std` is the population std of the run totals, and the evaluator rounds everything
  to 1 decimal for its CSV. The values returned here are unrounded.
- Combination names: the official evaluator joins a Python set with '_', so its name order depends on hashing and
  can change between processes. We join in the fixed order `MMVET_CAPABILITIES` (rec, ocr, know, gen, spat, math;
  unknown capabilities after them, alphabetically); the groups themselves are identical.

Deliberate deviation: Python's float() accepts 'nan', which passes the official range check (`> 1 or < 0`) and
would make every sum NaN; here it is invalid.

lmms-eval differs (not implemented): gpt-4o-2024-11-20 judge with max_tokens 128, a header whose first column is
mislabelled, no trailing space after the last '|', other retry logic, capabilities as a comma-separated string, and
a "think step by step" pre-prompt plus temperature 0.2 at generation time.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

MMVET_CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")
MMVET_RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "
MMVET_MAX_TRIES = 5


def mmvet_pad_answer(answer: str) -> str:
    """The ground truth as the grader sees it: '<AND>' and '<OR>' with a space on each side."""
    return answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")


def mmvet_grader_query(prompt: str, question: str, answer: str, prediction: str, *, retry: bool = False) -> str:
    """The grader's user message: `prompt` (the official few-shot prompt, which ends with a newline), a newline, then
    `question | padded answer | prediction | ` with an empty last cell for the grader to fill; a retry appends
    `MMVET_RETRY_SUFFIX`."""
    row = " | ".join([question, mmvet_pad_answer(answer), prediction, ""])
    return prompt + "\n" + row + (MMVET_RETRY_SUFFIX if retry else "")


def mmvet_parse_grade(output: str | None) -> float | None:
    """The score in one grader output, or None when the official loop would reject it and ask again: the part before
    the first single space, stripped, must parse as a float in [0, 1]. Quirks kept: ' 0.5' (leading space) and
    '0.5\\nGood' are invalid, '1.' and '1e-1' are valid. 'nan' is invalid (see the module docstring)."""
    if not isinstance(output, str):  # a completion can carry no content at all
        return None
    try:
        score = float(output.split(" ")[0].strip())
    except ValueError:
        return None
    # Written as "inside [0, 1]" rather than the official "not > 1 and not < 0", so that NaN is rejected.
    if not 0.0 <= score <= 1.0:
        return None
    return score


def mmvet_is_valid_grade(output: str | None) -> bool:
    """Whether the official loop would accept this grader output (else it re-queries with the retry suffix)."""
    return mmvet_parse_grade(output) is not None


def mmvet_final_score(outputs: Sequence[str | None]) -> tuple[float, bool]:
    """(score, valid) for one item from its grader outputs in the order they were received: the first valid output
    among the first `MMVET_MAX_TRIES` gives the score; if all 5 are invalid the score is 0.0 and `valid` False.
    Outputs after the one used are ignored. Fewer than 5 outputs, all invalid, raise ValueError: the official loop
    would not have stopped there."""
    for output in outputs[:MMVET_MAX_TRIES]:
        score = mmvet_parse_grade(output)
        if score is not None:
            return score, True
    if len(outputs) < MMVET_MAX_TRIES:
        raise ValueError(f"{len(outputs)} grader outputs, none valid; the official loop asks up to "
                         f"{MMVET_MAX_TRIES} times before scoring 0")
    return 0.0, False


def mmvet_combination_name(capabilities: Sequence[str]) -> str:
    """The name of a capability set, e.g. ['math', 'ocr', 'ocr'] -> 'ocr_math' (canonical order, duplicates once)."""
    known = [c for c in MMVET_CAPABILITIES if c in capabilities]
    return "_".join(known + sorted(set(capabilities) - set(MMVET_CAPABILITIES)))


def _capability_sets(capabilities: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    if not capabilities:
        raise ValueError("no MM-Vet samples")
    sets = {}
    for key, caps in capabilities.items():
        if isinstance(caps, str) or not caps or not all(isinstance(c, str) and c for c in caps):
            raise ValueError(f"MM-Vet sample {key!r}: capability must be a non-empty list of names, got {caps!r}")
        sets[key] = frozenset(caps)  # the evaluator takes set(): a repeated capability counts once
    return sets


def _some(keys: list[str]) -> str:
    return repr(keys[:5])[:-1] + (", ...]" if len(keys) > 5 else "]")


def _check_ids(expected: Mapping[str, object], scores: Mapping[str, float], what: str) -> None:
    missing = [k for k in expected if k not in scores]
    extra = [k for k in scores if k not in expected]
    if missing or extra:
        raise ValueError(f"{what}: ids do not match the metadata: {len(missing)} missing {_some(missing)}, "
                         f"{len(extra)} unknown {_some(extra)}")
    for key, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"{what}: score of {key!r} must be a number in [0, 1], got {score!r}")


def mmvet_scores(capabilities: Mapping[str, Sequence[str]], scores: Mapping[str, float]) -> dict:
    """One run's scores ×100: `total`, `per_capability` and `per_combination` (each ordered by sample count, most
    first, ties in canonical order), plus the sample `counts` behind them and `n`.

    `capabilities` maps sample id -> its capability list (mm-vet.json's `capability`); `scores` maps every id to its
    grade in [0, 1]. The id sets must be equal: a missing grade would otherwise count as 0 against the full
    denominator, and an unknown id is a sign of mismatched files. To score a subset (the official Bard subset),
    pass only its ids in `capabilities`.
    """
    sets = _capability_sets(capabilities)
    _check_ids(sets, scores, "MM-Vet scores")
    per_cap: Counter[str] = Counter()
    cap_count: Counter[str] = Counter()
    per_combo: Counter[str] = Counter()
    combo_count: Counter[str] = Counter()
    total = 0.0
    for key, caps in sets.items():
        score = scores[key]
        total += score
        for cap in caps:
            per_cap[cap] += score
            cap_count[cap] += 1
        name = mmvet_combination_name(caps)
        per_combo[name] += score
        combo_count[name] += 1
    order = {c: i for i, c in enumerate(MMVET_CAPABILITIES)}
    caps_sorted = sorted(cap_count, key=lambda c: (-cap_count[c], order.get(c, len(order)), c))
    combos_sorted = sorted(combo_count, key=lambda name: (-combo_count[name], name))
    return {"total": total / len(sets) * 100,
            "per_capability": {c: per_cap[c] / cap_count[c] * 100 for c in caps_sorted},
            "per_combination": {name: per_combo[name] / combo_count[name] * 100 for name in combos_sorted},
            "counts": {"capability": {c: cap_count[c] for c in caps_sorted},
                       "combination": {name: combo_count[name] for name in combos_sorted}},
            "n": len(sets)}


def mmvet_summary(capabilities: Mapping[str, Sequence[str]], runs: Sequence[Mapping[str, float]]) -> dict:
    """Several grading runs as the official evaluator reports them: every score the mean over runs of
    `mmvet_scores`, `std` the population standard deviation of the run totals, `runs` the run totals."""
    if not runs:
        raise ValueError("no MM-Vet grading runs")
    per_run = [mmvet_scores(capabilities, run) for run in runs]
    first = per_run[0]
    totals = [r["total"] for r in per_run]
    return {"total": statistics.fmean(totals), "std": statistics.pstdev(totals), "runs": totals,
            "per_capability": {c: statistics.fmean(r["per_capability"][c] for r in per_run)
                               for c in first["per_capability"]},
            "per_combination": {name: statistics.fmean(r["per_combination"][name] for r in per_run)
                                for name in first["per_combination"]},
            "counts": first["counts"], "n": first["n"]}


def read_mmvet_metadata(path: str | Path) -> dict[str, list[str]]:
    """Sample id -> capability list from the official `mm-vet.json` (a dict keyed 'v1_0' ... 'v1_217')."""
    with Path(path).open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by sample id, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if not isinstance(value, dict) or "capability" not in value:
            raise ValueError(f"{path}: sample {key!r} has no 'capability' field")
        out[key] = value["capability"]
    _capability_sets(out)  # validates every list, with the sample named
    return out


def read_mmvet_grades(path: str | Path) -> list[dict[str, float]]:
    """Per-run score maps from the evaluator's grade file (`{id: {"model": [...], "content": [...], "score":
    [...]}}`, one list entry per run). Every id must have the same number of runs; the evaluator would otherwise
    grade the short ones again before exporting."""
    with Path(path).open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object keyed by sample id")
    lengths = {}
    for key, value in data.items():
        if not isinstance(value, dict) or not isinstance(value.get("score"), list):
            raise ValueError(f"{path}: sample {key!r} has no 'score' list")
        lengths[key] = len(value["score"])
    n_runs = max(lengths.values())
    if n_runs == 0:
        raise ValueError(f"{path}: no sample has a score")
    short = [k for k, n in lengths.items() if n < n_runs]
    if short:
        raise ValueError(f"{path}: {len(short)} samples {_some(short)} have fewer than {n_runs} run scores")
    return [{key: value["score"][run] for key, value in data.items()} for run in range(n_runs)]
