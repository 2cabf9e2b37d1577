"""MM-Vet by hand: grader-output parsing, the retry rule, and total/per-capability/per-combination scores."""

import doctest
import json
from pathlib import Path

import pytest

from vlpref.evaluation.scoring import mmvet
from vlpref.evaluation.scoring.mmvet import (
    MMVET_RETRY_SUFFIX,
    mmvet_combination_name,
    mmvet_final_score,
    mmvet_grader_query,
    mmvet_is_valid_grade,
    mmvet_pad_answer,
    mmvet_parse_grade,
    mmvet_scores,
    mmvet_summary,
    read_mmvet_grades,
    read_mmvet_metadata,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mmvet"
GRADES = FIXTURES / "llava_gpt-4-0613-grade-2runs.json"


def test_docstring_examples():
    assert doctest.testmod(mmvet).failed == 0


@pytest.mark.parametrize(("output", "expected"), [
    ("0.5", 0.5), ("1.0", 1.0), ("0", 0.0), ("1", 1.0), ("1.", 1.0), ("1e-1", 0.1),
    ("0.8\n", 0.8),                   # stripped after the split
    ("0.4 because", 0.4),             # only the part before the first space
    (" 0.5", None),                   # leading space: the first piece is ''
    ("0.5\nGood", None),              # the split is on ' ' only
    ("0.5.", None), ("Correct", None), ("", None), (None, None),
    ("1.1", None), ("-0.1", None),    # outside [0, 1]
    ("nan", None), ("inf", None),     # non-finite: rejected here (the official range check lets 'nan' through)
])
def test_parse_grade(output, expected):
    got = mmvet_parse_grade(output)
    assert got == (pytest.approx(expected) if expected is not None else None)
    assert mmvet_is_valid_grade(output) is (expected is not None)


def test_final_score_follows_the_retry_rule():
    assert mmvet_final_score(["0.3"]) == (pytest.approx(0.3), True)
    assert mmvet_final_score(["Correct", " 0.5", "0.8", "0.1"]) == (pytest.approx(0.8), True)   # first valid wins
    assert mmvet_final_score(["x"] * 4 + ["1.0"]) == (pytest.approx(1.0), True)                 # the 5th still counts
    assert mmvet_final_score(["x"] * 5) == (0.0, False)
    assert mmvet_final_score(["x"] * 5 + ["1.0"]) == (0.0, False)       # a 6th answer is never read
    with pytest.raises(ValueError, match="4 grader outputs, none valid"):
        mmvet_final_score(["x"] * 4)


def test_grader_query_layout():
    assert mmvet_pad_answer("-1<AND>-5") == "-1 <AND> -5"
    assert mmvet_pad_answer("a<OR>b") == "a <OR> b"
    query = mmvet_grader_query("PROMPT\n", "What is x?", "-1<AND>-5", "x = -1")
    assert query == "PROMPT\n\nWhat is x? | -1 <AND> -5 | x = -1 | "       # blank line, empty last cell
    retry = mmvet_grader_query("PROMPT\n", "What is x?", "-1<AND>-5", "x = -1", retry=True)
    assert retry == query + MMVET_RETRY_SUFFIX


def test_combination_names():
    assert mmvet_combination_name(["math", "ocr"]) == "ocr_math"
    assert mmvet_combination_name(["ocr", "math", "ocr"]) == "ocr_math"
    assert mmvet_combination_name(["gen", "rec", "know"]) == "rec_know_gen"
    assert mmvet_combination_name(["seq", "rec"]) == "rec_seq"            # unknown capabilities go last


def test_one_run_by_hand():
    caps = read_mmvet_metadata(FIXTURES / "mm-vet.json")
    run1 = read_mmvet_grades(GRADES)[0]
    got = mmvet_scores(caps, run1)
    # run 1: v1_0 rec 1.0, v1_1 ocr+math 0.5, v1_2 rec+know+gen 0.4, v1_3 ocr 0.0, v1_4 rec+spat 1.0,
    #        v1_5 math+ocr 0.0
    # total = 100 * 2.9 / 6 = 48.33
    assert got["total"] == pytest.approx(290 / 6)
    # rec: (1.0 + 0.4 + 1.0)/3 = 80; ocr: (0.5 + 0 + 0)/3 = 16.67; math: (0.5 + 0)/2 = 25;
    # know = gen = 40; spat = 100. A sample with several capabilities counts fully in each.
    assert got["per_capability"] == pytest.approx({"rec": 80.0, "ocr": 50 / 3, "math": 25.0, "know": 40.0,
                                                   "gen": 40.0, "spat": 100.0})
    # ordered by count: rec 3, ocr 3, math 2, then know, gen, spat (1 each, canonical order)
    assert list(got["per_capability"]) == ["rec", "ocr", "math", "know", "gen", "spat"]
    assert got["counts"]["capability"] == {"rec": 3, "ocr": 3, "math": 2, "know": 1, "gen": 1, "spat": 1}
    # combinations: ocr_math = {v1_1, v1_5} (listed in different orders) -> (0.5 + 0)/2 = 25
    assert got["per_combination"] == pytest.approx({"ocr_math": 25.0, "ocr": 0.0, "rec": 100.0,
                                                    "rec_know_gen": 40.0, "rec_spat": 100.0})
    assert list(got["per_combination"])[0] == "ocr_math"
    assert got["n"] == 6


def test_a_repeated_capability_counts_once():
    # the evaluator takes set(capability): v1_1 counts once for ocr -> ocr = (1.0 + 0.0)/2 = 50, not (2 + 0)/3
    got = mmvet_scores({"v1_0": ["ocr"], "v1_1": ["ocr", "ocr"]}, {"v1_0": 0.0, "v1_1": 1.0})
    assert got["per_capability"] == {"ocr": pytest.approx(50.0)}
    assert got["counts"]["capability"] == {"ocr": 2}
    assert got["per_combination"] == {"ocr": pytest.approx(50.0)}


def test_two_runs_by_hand():
    caps = read_mmvet_metadata(FIXTURES / "mm-vet.json")
    runs = read_mmvet_grades(GRADES)
    assert len(runs) == 2
    got = mmvet_summary(caps, runs)
    # totals: run 1 = 100 * 2.9/6 = 48.33, run 2 = 100 * (1 + 1 + 0.6 + 0 + 0.5 + 0)/6 = 100 * 3.1/6 = 51.67
    # mean 50.0; population std = |51.67 - 48.33| / 2 = 1.67
    assert got["runs"] == pytest.approx([290 / 6, 310 / 6])
    assert got["total"] == pytest.approx(50.0)
    assert got["std"] == pytest.approx(10 / 6)
    # rec: run 1 (1 + 0.4 + 1)/3 = 80, run 2 (1 + 0.6 + 0.5)/3 = 70 -> 75
    # ocr: 16.67 and (1 + 0 + 0)/3 = 33.33 -> 25;  math: 25 and (1 + 0)/2 = 50 -> 37.5
    # know = gen: 40 and 60 -> 50;  spat: 100 and 50 -> 75
    assert got["per_capability"] == pytest.approx({"rec": 75.0, "ocr": 25.0, "math": 37.5, "know": 50.0,
                                                   "gen": 50.0, "spat": 75.0})
    assert got["per_combination"] == pytest.approx({"ocr_math": 37.5, "ocr": 0.0, "rec": 100.0,
                                                    "rec_know_gen": 50.0, "rec_spat": 75.0})
    assert mmvet_summary(caps, runs[:1])["std"] == 0.0


def test_mismatched_ids_and_bad_scores_raise():
    caps = {"v1_0": ["rec"], "v1_1": ["ocr"]}
    with pytest.raises(ValueError, match=r"1 missing \['v1_1'\], 1 unknown \['v1_9'\]"):
        mmvet_scores(caps, {"v1_0": 1.0, "v1_9": 0.5})
    with pytest.raises(ValueError, match=r"1 missing \['v1_1'\], 0 unknown \[\]"):
        mmvet_scores(caps, {"v1_0": 1.0})
    with pytest.raises(ValueError, match="score of 'v1_1' must be a number in \\[0, 1\\], got 1.5"):
        mmvet_scores(caps, {"v1_0": 1.0, "v1_1": 1.5})
    with pytest.raises(ValueError, match="score of 'v1_1'"):
        mmvet_scores(caps, {"v1_0": 1.0, "v1_1": "0.5"})
    with pytest.raises(ValueError, match="sample 'v1_1': capability must be a non-empty list"):
        mmvet_scores({"v1_0": ["rec"], "v1_1": "ocr,math"}, {"v1_0": 1.0, "v1_1": 0.0})
    with pytest.raises(ValueError, match="no MM-Vet samples"):
        mmvet_scores({}, {})
    with pytest.raises(ValueError, match="no MM-Vet grading runs"):
        mmvet_summary(caps, [])


def test_bad_files_raise(tmp_path):
    grades = json.loads(GRADES.read_text())
    grades["v1_3"]["score"] = [0.0]                                   # one run short
    path = tmp_path / "grades.json"
    path.write_text(json.dumps(grades))
    with pytest.raises(ValueError, match=r"1 samples \['v1_3'\] have fewer than 2 run scores"):
        read_mmvet_grades(path)
    path.write_text(json.dumps({"v1_0": {"content": ["1.0"]}}))
    with pytest.raises(ValueError, match="sample 'v1_0' has no 'score' list"):
        read_mmvet_grades(path)
    meta = tmp_path / "mm-vet.json"
    meta.write_text(json.dumps({"v1_0": {"question": "q", "answer": "a"}}))
    with pytest.raises(ValueError, match="sample 'v1_0' has no 'capability' field"):
        read_mmvet_metadata(meta)
    meta.write_text(json.dumps([{"capability": ["rec"]}]))
    with pytest.raises(ValueError, match="expected a JSON object keyed by sample id"):
        read_mmvet_metadata(meta)
