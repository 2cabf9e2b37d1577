"""MME by hand: the official 4-character parser, acc/acc+, totals and the results-directory reader."""

import doctest
import shutil
from pathlib import Path

import pytest

from vlpref.evaluation.scoring import mme
from vlpref.evaluation.scoring.mme import (
    COGNITION_SUBTASKS,
    PERCEPTION_SUBTASKS,
    MMELine,
    mme_answer,
    mme_subtask_score,
    mme_totals,
    parse_mme_line,
    read_mme_file,
    read_mme_results,
    score_mme_results,
)

RESULTS = Path(__file__).parent / "fixtures" / "mme" / "results"


def test_docstring_examples():
    assert doctest.testmod(mme).failed == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes", "yes"), ("no", "no"), ("YES.", "yes"),
    ("Yes, there is a dog.", "yes"),
    ("not at all", "no"), ("None of them", "no"), ("nope", "no"), ("No\n", "no"),
    (" yes", "yes"),                     # a leading space still leaves 'yes' inside the first 4 characters
    ("   yes", "other"),                 # 3 spaces push it out: '   y'
    ("The answer is yes.", "other"),     # only the first 4 characters count
    ("I think no", "other"),
    ("Y", "other"), ("n", "other"),      # lmms-eval would map these; the official rule does not
    ("", "other"),
    ("yesno", "yes"),                    # 'yes' is looked for before 'no'
    ("Unknown", "other"),                # 'unkn' has no 'no'
    ("Snow", "no"),                      # ... but 'snow' does: a substring test, not a word test
])
def test_mme_answer_official_rule(text, expected):
    assert mme_answer(text) == expected


def test_acc_plus_needs_both_questions_of_an_image():
    lines = [MMELine("a", "q1", "Yes", "yes"), MMELine("a", "q2", "No", "yes"),    # 1 of 2 right
             MMELine("b", "q1", "No", "no"), MMELine("b", "q2", "Yes", "yes"),     # 2 of 2 right
             MMELine("c", "q1", "Yes", "no"), MMELine("c", "q2", "No", "yes")]     # 0 of 2 right
    got = mme_subtask_score(lines)
    # acc = 3/6 = 50, acc+ = 1/3 images fully right = 33.33..., score = 83.33...
    assert got["acc"] == pytest.approx(50.0)
    assert got["acc_plus"] == pytest.approx(100 / 3)
    assert got["score"] == pytest.approx(50 + 100 / 3)
    assert (got["images"], got["questions"], got["correct"], got["other"]) == (3, 6, 3, 0)


def test_other_answers_are_wrong_and_counted():
    lines = [MMELine("a", "q1", "Yes", "The answer is yes"), MMELine("a", "q2", "No", "Y")]
    got = mme_subtask_score(lines)
    assert got["other"] == 2
    assert got["score"] == 0.0


def test_fixture_by_hand():
    got = score_mme_results(RESULTS)
    scores = {name: result["score"] for name, result in got["subtasks"].items()}
    # existence: img1 yes/yes no/no (2 right), img2 'Yes, there is a dog.'->yes right, 'Yes' vs No wrong
    #            -> acc 3/4 = 75, acc+ 1/2 = 50 -> 125
    # count:     'no' vs Yes wrong, 'No' right -> 50 + 0 = 50
    # position:  'The answer is yes.' -> other (wrong), 'not at all' -> no (right) -> 50
    # color:     'yes', 'NO.' -> both right -> 200
    # posters:   ' yes', 'nope' -> both right -> 200
    # celebrity: 'Yes' right, 'Yes' vs No wrong -> 50
    # scene:     img1 both right, img2 'No' vs Yes wrong, 'No' right -> 75 + 50 = 125
    # landmark:  'Y', 'n' -> both other -> 0
    # artwork:   'Yes.', 'No' -> 200
    # OCR:       'yes' right, '' -> other -> 50
    # perception = 125 + 50 + 50 + 200 + 200 + 50 + 125 + 0 + 200 + 50 = 1050
    assert scores["existence"] == pytest.approx(125.0)
    assert scores["count"] == pytest.approx(50.0)
    assert scores["position"] == pytest.approx(50.0)
    assert scores["color"] == pytest.approx(200.0)
    assert scores["posters"] == pytest.approx(200.0)
    assert scores["celebrity"] == pytest.approx(50.0)
    assert scores["scene"] == pytest.approx(125.0)
    assert scores["landmark"] == pytest.approx(0.0)
    assert scores["artwork"] == pytest.approx(200.0)
    assert scores["OCR"] == pytest.approx(50.0)
    assert got["perception"] == pytest.approx(1050.0)
    # commonsense: img1 both right; img2 'I think no' -> other (wrong), 'yes' right -> 75 + 50 = 125
    # numerical:   'no' vs Yes, 'yes' vs No -> 0
    # translation: both right -> 200
    # code:        'Yes, the output is 3' -> yes, 'None of the sort' -> no -> 200
    # cognition = 125 + 0 + 200 + 200 = 525
    assert scores["commonsense_reasoning"] == pytest.approx(125.0)
    assert scores["numerical_calculation"] == pytest.approx(0.0)
    assert got["cognition"] == pytest.approx(525.0)
    # other: position 1 + landmark 2 + OCR 1 + commonsense 1 = 5
    assert got["other"] == 5
    assert got["subtasks"]["landmark"]["other"] == 2
    assert got["missing"] == [] and got["unknown"] == []
    assert list(got["subtasks"]) == list(PERCEPTION_SUBTASKS + COGNITION_SUBTASKS)   # official order


def test_missing_and_unknown_subtasks_are_reported(tmp_path):
    shutil.copy(RESULTS / "existence.txt", tmp_path / "existence.txt")
    shutil.copy(RESULTS / "OCR.txt", tmp_path / "ocr.txt")                # wrong case: not the OCR subtask
    (tmp_path / "notes.txt").write_text("free text\n")
    got = score_mme_results(tmp_path)
    assert list(got["subtasks"]) == ["existence"]
    assert got["unknown"] == ["notes", "ocr"]
    assert "OCR" in got["missing"] and "existence" not in got["missing"]
    assert len(got["missing"]) == 13
    assert got["perception"] is None and got["cognition"] is None         # no partial sums
    assert read_mme_results(tmp_path).missing == got["missing"]


def test_totals_by_hand_and_unknown_names():
    scores = dict.fromkeys(PERCEPTION_SUBTASKS, 100.0) | dict.fromkeys(COGNITION_SUBTASKS, 50.0)
    got = mme_totals(scores)
    assert got["perception"] == pytest.approx(1000.0)   # 10 x 100
    assert got["cognition"] == pytest.approx(200.0)     # 4 x 50
    assert got["missing"] == []
    del scores["code_reasoning"]
    got = mme_totals(scores)
    assert got["cognition"] is None and got["perception"] == pytest.approx(1000.0)
    assert got["missing"] == ["code_reasoning"]
    with pytest.raises(ValueError, match="unknown MME subtasks.*'ocr'"):
        mme_totals({"ocr": 100.0})


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "existence.txt"
    path.write_text("a.jpg\tIs there a dog?\tYes\tyes\na.jpg\tIs there a cat?\tNo\n")    # answer missing
    with pytest.raises(ValueError, match=r"existence\.txt:2: no answer column: 3 TAB-separated fields") as error:
        read_mme_file(path)
    assert "TAB inside" not in str(error.value)  # nothing to do with a TAB in an answer
    path.write_bytes(b"a.jpg\tIs there a dog?\tYes\tYes\rit is\na.jpg\tIs there a cat?\tNo\tNo\n")  # stray CR
    with pytest.raises(ValueError, match=r"existence\.txt:1: a stray carriage return \(CR\) in the answer") as error:
        read_mme_file(path)
    assert "TAB inside" not in str(error.value)
    path.write_text("a.jpg\tIs there a dog?\tYes\tYes\nit is\na.jpg\tIs there a cat?\tNo\tNo\n")  # a newline
    with pytest.raises(ValueError, match=r"existence\.txt:2: .* got 1; is it the rest of the line before"):
        read_mme_file(path)
    path.write_text("a.jpg\tIs there a dog?\tYes\tyes\tand\ta cat\n")                 # TAB inside the answer
    with pytest.raises(ValueError, match=r"existence\.txt:1: .* got 6"):
        read_mme_file(path)
    path.write_text("a.jpg\tq\tYes\tyes\n\na.jpg\tq\tNo\tno\n")                       # blank line in the middle
    with pytest.raises(ValueError, match=r"existence\.txt:2:"):
        read_mme_file(path)
    path.write_text("a.jpg\tq\tYes\tyes\na.jpg\tq\tMaybe\tno\n")
    with pytest.raises(ValueError, match=r"existence\.txt:2: ground truth must be Yes or No"):
        read_mme_file(path)


def test_trailing_blank_lines_and_crlf_are_harmless(tmp_path):
    path = tmp_path / "count.txt"
    path.write_bytes(b"a.jpg\tq1\tYes\tyes\r\na.jpg\tq2\tNo\tNo\r\n\r\n")
    lines = read_mme_file(path)
    assert [line.answer for line in lines] == ["yes", "No"]                # no '\r' left on the answer
    assert lines[1].source == "count.txt:2"
    assert mme_subtask_score(lines)["score"] == pytest.approx(200.0)


def test_structural_errors(tmp_path):
    with pytest.raises(ValueError, match="existence: no questions"):
        mme_subtask_score([], name="existence")
    (tmp_path / "color.txt").write_text("")                                  # empty subtask file
    with pytest.raises(ValueError, match="color: no questions"):
        score_mme_results(tmp_path)
    odd = [parse_mme_line("a\tq\tYes\tyes", "count.txt:1"), parse_mme_line("a\tq\tNo\tno", "count.txt:2"),
           parse_mme_line("b\tq\tYes\tyes", "count.txt:3")]
    with pytest.raises(ValueError, match=r"count\.txt:3: count has 3 questions"):
        mme_subtask_score(odd, name="count")
    with pytest.raises(ValueError, match="not a directory"):
        read_mme_results(tmp_path / "absent")
    with pytest.raises(ValueError, match="ground truth"):
        mme_subtask_score([MMELine("a", "q", "yes.", "yes"), MMELine("a", "q", "No", "no")])


def test_mismatched_pair_is_an_error_unless_official_positional_pairing_is_asked_for():
    lines = [parse_mme_line("a.jpg\tq1\tYes\tyes", "scene.txt:1"), parse_mme_line("b.jpg\tq1\tNo\tno", "scene.txt:2"),
             parse_mme_line("a.jpg\tq2\tNo\tno", "scene.txt:3"), parse_mme_line("b.jpg\tq2\tYes\tno", "scene.txt:4")]
    with pytest.raises(ValueError, match=r"scene\.txt:2: .*'a\.jpg' vs 'b\.jpg'"):
        mme_subtask_score(lines, name="scene")
    # the official tool pairs by position: (1,2) both right, (3,4) one right -> acc 3/4, acc+ 1/2
    got = mme_subtask_score(lines, name="scene", check_pairs=False)
    assert got["score"] == pytest.approx(75.0 + 50.0)
