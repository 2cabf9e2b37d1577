"""CHAIR and POPE by hand."""

import pytest

from vlpref.evaluation.scoring.chair import chair
from vlpref.evaluation.scoring.pope import pope_answer, pope_metrics


def test_chair_by_hand():
    # caption 1: dog (ok), cat (hallucinated), cat (hallucinated again: duplicates count) -> 2 of 3 wrong
    # caption 2: car (ok) -> 0 of 1 wrong
    got = chair([["dog", "cat", "cat"], ["car"]], [{"dog"}, {"car", "bus"}])
    assert got["chair_i"] == pytest.approx(2 / 4)      # 2 hallucinated mentions of 4
    assert got["chair_s"] == pytest.approx(1 / 2)      # 1 caption of 2 has a hallucination
    assert got["recall"] == pytest.approx((1 + 1) / (1 + 2))  # dog of {dog}; car of {car, bus}


def test_chair_empty_captions():
    assert chair([[], []], [{"a"}, set()])["chair_i"] == 0.0


def test_pope_official_parser_quirks():
    assert pope_answer("No, there is not.") == "no"
    assert pope_answer("Yes. No.") == "yes"            # only the first sentence counts
    assert pope_answer("NO") == "yes"                  # case-sensitive, as the official script
    assert pope_answer("") == "yes"
    assert pope_answer("There is not a dog") == "no"


def test_pope_metrics_by_hand():
    pred = ["yes", "yes", "yes", "no", "no", "no"]
    gold = ["yes", "yes", "no", "no", "no", "yes"]
    # TP=2, FP=1, TN=2, FN=1 -> P=2/3, R=2/3, F1=2/3, acc=4/6, yes-ratio=3/6
    got = pope_metrics(pred, gold)
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (2, 1, 2, 1)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3) and got["accuracy"] == pytest.approx(4 / 6)
    assert got["yes_ratio"] == pytest.approx(0.5)
    assert pope_metrics(["no", "no"], ["yes", "no"])["f1"] == 0.0  # no 'yes' predicted: 0, not a crash


def test_pope_lmms_eval_mode_by_hand():
    from vlpref.evaluation.scoring.pope import pope_metrics_lmms_eval

    texts = ["Yes", "yes.", " no ", "No", "Yes, there is", "yes"]
    gold = ["yes", "yes", "no", "yes", "yes", "no"]
    # exact after lower/strip: yes|yes ok; 'yes.'|yes unmatched; no|no ok; no|yes wrong (FN); unmatched; yes|no (FP)
    got = pope_metrics_lmms_eval(texts, gold)
    assert (got["tp"], got["fp"], got["tn"], got["fn"], got["unmatched"]) == (1, 1, 1, 1, 2)
    assert got["accuracy"] == pytest.approx(2 / 6)
    assert got["precision"] == pytest.approx(1 / 2) and got["recall"] == pytest.approx(1 / 2)
    assert got["f1"] == pytest.approx(1 / 2)
    assert got["yes_ratio"] == pytest.approx(2 / 6)  # answers exactly 'yes', not the labels' yeses
    # The official parser reads the same answers differently: 'Yes, there is' and 'yes.' are yes.
    assert [pope_answer(t) for t in texts] == ["yes", "yes", "no", "no", "yes", "yes"]
