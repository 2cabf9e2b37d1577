"""MT-Bench single-answer grading by hand, on a judgment file in FastChat's layout (3 models, 3 questions)."""

import json
import math
from pathlib import Path

import pytest

from vlpref.evaluation.scoring.mtbench import FAILED, judge_rating, mtbench_scores

FIXTURES = Path(__file__).parent / "fixtures" / "mtbench"


def _jsonl(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


JUDGMENTS = _jsonl("model_judgment/gpt-4_single.jsonl")
QUESTION_IDS = {q["question_id"] for q in _jsonl("question.jsonl")}


def test_rating_patterns():
    assert judge_rating("Rating: [[8]]") == 8 and isinstance(judge_rating("[[8]]"), int)
    assert judge_rating("Rating: [[7.5]]") == 7.5
    assert judge_rating("[[7.]]") == 7.0
    assert judge_rating("See [3] above. Rating: [[8]]") == 8    # [[x]] is searched over the whole text first
    assert judge_rating("Rating: [[8]] ... or maybe [[9]]") == 8  # the first [[x]] wins
    assert judge_rating("I rate it [6].") == 6                   # fallback: single brackets
    assert judge_rating("Step [1] is wrong; 4 out of 10") == 1   # the fallback takes any bracketed number
    assert judge_rating("Rating: [[11]]") == 11                  # not clamped to 1-10
    assert judge_rating("Rating: [[0]]") == 0


def test_rating_failures_give_minus_one():
    for text in ("Rating: 8/10", "Rating: [[8/10]]", "Rating: [[ 8 ]]", "Rating: [[-3]]", "Rating: [[eight]]", ""):
        assert judge_rating(text) == FAILED == -1, text
    # FastChat's literal_eval raises on these (a leading zero, a non-ASCII digit) and the run dies; ours: -1
    assert judge_rating("Rating: [[07]]") == -1
    assert judge_rating("Rating: [[\u0663]]") == -1


def test_fixture_scores_are_what_the_extractor_gives():
    for row in JUDGMENTS:
        assert judge_rating(row["judgment"]) == row["score"], row


def test_scores_by_hand():
    got = mtbench_scores(JUDGMENTS, question_ids=QUESTION_IDS)
    assert list(got) == ["model-a", "model-b", "model-c"]
    # model-a: turn 1 = 8, 9 (question 111 failed: 'Rating: 10/10' has no brackets) -> 17/2 = 8.5
    #          turn 2 = 6, 7 (from '[7]'), 3 -> 16/3 = 5.333; all kept rows: (8+9+6+7+3)/5 = 33/5 = 6.6
    a = got["model-a"]
    assert a["turn_1"] == 8.5 and a["turn_2"] == pytest.approx(16 / 3) and a["average"] == pytest.approx(6.6)
    assert (a["judgments"], a["failures"]) == (5, 1)
    # the MT-Bench score pools the rows; the mean of the two turn means would be (8.5 + 5.333)/2 = 6.917
    assert a["average"] != pytest.approx((a["turn_1"] + a["turn_2"]) / 2)
    # model-b: turn 1 = 5, 7, 6 -> 18/3 = 6.0; turn 2 = 4, 2 ('Step [2]' taken by the fallback), 2.5 -> 8.5/3
    #          average = (18 + 8.5)/6 = 26.5/6 = 4.4167
    b = got["model-b"]
    assert b["turn_1"] == 6.0 and b["turn_2"] == pytest.approx(8.5 / 3) and b["average"] == pytest.approx(26.5 / 6)
    assert (b["judgments"], b["failures"]) == (6, 0)
    # model-c: its only turn-2 judgment failed -> no turn-2 score at all, the average is turn 1 alone
    assert got["model-c"] == {"turn_1": 9.0, "turn_2": None, "average": 9.0, "judgments": 1, "failures": 1}


def test_model_filter_and_all_failed_model():
    got = mtbench_scores(JUDGMENTS, models=["model-b"])
    assert list(got) == ["model-b"] and got["model-b"]["average"] == pytest.approx(26.5 / 6)
    rows = [{"model": "x", "question_id": 81, "turn": t, "score": -1} for t in (1, 2)]
    assert mtbench_scores(rows) == {"x": {"turn_1": None, "turn_2": None, "average": None, "judgments": 0,
                                          "failures": 2}}
    assert mtbench_scores([]) == {}
    # only -1 is the failure value: a 0 rating ('[[0]]') counts, and -1.0 is dropped like -1
    rows = [{"model": "x", "question_id": q, "turn": 1, "score": s} for q, s in ((81, 0), (82, -1.0), (83, 4))]
    assert mtbench_scores(rows)["x"] == {"turn_1": 2.0, "turn_2": None, "average": 2.0, "judgments": 2, "failures": 1}


def test_clear_errors():
    extra = {"question_id": 999, "model": "model-a", "turn": 1, "score": 5}
    with pytest.raises(ValueError, match=r"judgment 14 \(model 'model-a', question_id 999, turn 1\): question_id is "
                                         r"not in the question file"):
        mtbench_scores(JUDGMENTS + [extra], question_ids=QUESTION_IDS)
    with pytest.raises(ValueError, match=r"judgment 14 .*question_id 81, turn 1\): judged more than once"):
        mtbench_scores(JUDGMENTS + [dict(JUDGMENTS[0])])
    row = {"question_id": 81, "model": "m", "turn": 1, "score": 5}
    with pytest.raises(ValueError, match=r"'turn' must be 1 or 2"):
        mtbench_scores([row | {"turn": 3}])
    with pytest.raises(ValueError, match=r"'turn' must be 1 or 2"):
        mtbench_scores([row | {"turn": True}])
    with pytest.raises(ValueError, match=r"'score' must be a number, got '8'"):
        mtbench_scores([row | {"score": "8"}])
    with pytest.raises(ValueError, match=r"'score' must be a number, got nan"):
        mtbench_scores([row | {"score": math.nan}])
    with pytest.raises(ValueError, match=r"'model' must be a string"):
        mtbench_scores([{k: v for k, v in row.items() if k != "model"}])
