"""`vlpref eval score` on files in the official layouts: the numbers equal the scorers' (tested by hand in
tests/evaluation/scoring), POPE's split matching is checked by hand here, and answers that do not fit the questions
fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import vlpref
from vlpref.errors import VlprefError
from vlpref.evaluation.score import score
from vlpref.evaluation.scoring import amber, llava_bench, mme, mtbench

FIXTURES = Path(__file__).parent / "evaluation" / "scoring" / "fixtures"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def pope_files(tmp_path):
    answers = write_jsonl(tmp_path / "answers.jsonl", [
        {"question_id": 1, "text": "Yes, there is a dog."}, {"question_id": 2, "text": "No."},
        {"question_id": 3, "text": "There is not."}, {"question_id": 4, "text": "Yes."},
        {"question_id": 5, "text": "yes"}, {"question_id": 6, "text": "No, it is not."}])
    random = write_jsonl(tmp_path / "coco_pope_random.json", [
        {"question_id": 1, "label": "yes"}, {"question_id": 2, "label": "no"}, {"question_id": 3, "label": "yes"},
        {"question_id": 4, "label": "no"}])
    adversarial = write_jsonl(tmp_path / "coco_pope_adversarial.json", [
        {"question_id": 5, "label": "yes"}, {"question_id": 6, "label": "yes"}])
    return answers, random, adversarial


def test_pope_scores_each_split_by_its_question_file(pope_files):
    answers, random, adversarial = pope_files
    results = score("pope", answers=answers, labels=[random, adversarial])
    splits = results["splits"]  # the layout `vlpref eval --benchmark pope` writes, so the two compare
    # random: predictions yes, no, no, yes vs labels yes, no, yes, no -> tp 1, fp 1, tn 1, fn 1
    assert splits["random"]["accuracy"] == 0.5 and splits["random"]["f1"] == 0.5
    # adversarial: "yes" (no '.', no 'No'/'no'/'not') is yes, "No, it is not." is no -> tp 1, fn 1
    assert splits["adversarial"]["recall"] == 0.5 and splits["adversarial"]["precision"] == 1.0
    assert splits["adversarial"]["yes_ratio"] == 0.5
    assert results["f1_mean"] is None  # popular was not scored: no mean of three


def test_pope_answers_must_fit_the_questions(pope_files, tmp_path):
    answers, random, adversarial = pope_files
    with pytest.raises(VlprefError, match="2 answer.s. match no question"):
        score("pope", answers=answers, labels=[random])
    short = write_jsonl(tmp_path / "short.jsonl", [{"question_id": 1, "text": "Yes"}])
    with pytest.raises(VlprefError, match=r"no answer for 3 question\(s\) of .*coco_pope_random.json"):
        score("pope", answers=short, labels=[random])
    with pytest.raises(VlprefError, match="pope: --labels is required"):
        score("pope", answers=answers)


POPE = FIXTURES / "pope"
LABELS = [POPE / f"coco_pope_{split}.json" for split in ("random", "popular", "adversarial")]


def by_hand(results: dict) -> None:
    """The POPE fixture scored by hand with the official parser (tests/evaluation/scoring/fixtures/pope)."""
    splits = results["splits"]
    # random: Yes / No / "No, there is not." / "Yes, there is a toaster." vs yes no yes no: tp fp tn fn 1 each
    assert [splits["random"][k] for k in ("tp", "fp", "tn", "fn", "f1")] == [1, 1, 1, 1, 0.5]
    # popular: yes no yes yes vs yes no yes no: tp 2, tn 1, fp 1 -> P 2/3, R 1, F1 0.8
    assert (splits["popular"]["tp"], splits["popular"]["fp"]) == (2, 1)
    assert splits["popular"]["f1"] == pytest.approx(0.8)
    # adversarial: "NO" is yes (the official parser is case-sensitive), "No." is no -> tp fp tn fn 1 each
    assert splits["adversarial"]["f1"] == 0.5 and splits["adversarial"]["yes_ratio"] == 0.5
    assert results["f1_mean"] == pytest.approx((0.5 + 0.8 + 0.5) / 3)
    assert results["pooled"]["n"] == 12 and results["pooled"]["accuracy"] == pytest.approx(7 / 12)


def test_pope_llava_merged_answers_with_its_question_file():
    """LLaVA's merge.jsonl holds all three splits under its own question ids; its question file's `category` says
    which split each answer is, taken in order against that split's label file (eval_pope.py)."""
    by_hand(score("pope", answers=POPE / "merge.jsonl", labels=LABELS, questions=POPE / "llava_pope_test.jsonl"))
    by_hand(score("pope", answers=POPE / "merge.jsonl", labels=[POPE], questions=POPE / "llava_pope_test.jsonl"))
    with pytest.raises(VlprefError, match="answers of categories adversarial, random have no label file"):
        score("pope", answers=POPE / "merge.jsonl", labels=[POPE / "coco_pope_popular.json"],
              questions=POPE / "llava_pope_test.jsonl")
    # without it, LLaVA's ids would be matched to the label files' ids, which every split numbers from 1
    with pytest.raises(VlprefError, match="coco_pope_random.json and coco_pope_popular.json share question ids.*"
                                          "--questions"):
        score("pope", answers=POPE / "merge.jsonl", labels=LABELS)
    with pytest.raises(VlprefError, match=r"8 answer\(s\) match no question.*--questions"):
        score("pope", answers=POPE / "merge.jsonl", labels=LABELS[:1])


def llava_rows() -> list[dict]:
    return [json.loads(line) for line in (POPE / "merge.jsonl").read_text().splitlines()]


def test_pope_answers_folder_that_vlpref_eval_writes(tmp_path):
    rows = llava_rows()
    (tmp_path / "answers").mkdir()
    for k, split in enumerate(("random", "popular", "adversarial")):
        write_jsonl(tmp_path / "answers" / f"{split}.jsonl", [
            {"question_id": i + 1, "prompt": row["prompt"], "text": row["text"]}
            for i, row in enumerate(rows[4 * k : 4 * k + 4])])
    by_hand(score("pope", answers=tmp_path / "answers", labels=[POPE]))
    # answers to another split's questions (circles scored against hexagons) are named, not scored
    (tmp_path / "answers" / "random.jsonl").replace(tmp_path / "random.jsonl")
    (tmp_path / "answers" / "popular.jsonl").rename(tmp_path / "answers" / "random.jsonl")
    (tmp_path / "random.jsonl").replace(tmp_path / "answers" / "popular.jsonl")
    with pytest.raises(VlprefError, match=r"random.jsonl, line 1: question_id 1 answers 'Is there a person in the "
                                          r"image\?' but the label file asks 'Is there a snowboard in the image\?' "
                                          r"\(3 of 4 answers differ"):  # both ask about a dog third
        score("pope", answers=tmp_path / "answers", labels=[POPE])


def test_pope_answers_about_other_questions_are_an_error(tmp_path):
    rows = llava_rows()[:4]
    rows[2]["prompt"] = rows[2]["prompt"].replace("dog", "hexagon")
    answers = write_jsonl(tmp_path / "answers.jsonl", [{**r, "question_id": i + 1} for i, r in enumerate(rows)])
    with pytest.raises(VlprefError, match=r"line 3: question_id 3 answers 'Is there a hexagon in the image\?' but "
                                          r"the label file asks 'Is there a dog in the image\?' \(1 of 4"):
        score("pope", answers=answers, labels=[LABELS[0]])


def test_pope_null_answer_and_json_lines_whatever_the_first_key(tmp_path):
    rows = [{"text": r["text"], "question_id": i + 1} for i, r in enumerate(llava_rows()[:4])]
    # JSON Lines named .json whose records start with another key are still JSON Lines
    answers = write_jsonl(tmp_path / "answers.json", rows)
    assert score("pope", answers=answers, labels=[LABELS[0]])["splits"]["random"]["f1"] == 0.5
    rows[1]["text"] = None
    write_jsonl(answers, rows)
    with pytest.raises(VlprefError, match=r"answers.json, line 2: question_id 2: `text` is null"):
        score("pope", answers=answers, labels=[LABELS[0]])


def test_pope_lmms_eval_scoring_reports_both_yes_ratios(tmp_path):
    out = vlpref("eval", "score", "--benchmark", "pope", "--scoring", "lmms-eval", "--answers",
                 str(POPE / "merge.jsonl"), "--questions", str(POPE / "llava_pope_test.jsonl"), "--labels",
                 str(LABELS[0]), "--labels", str(LABELS[1]), "--labels", str(LABELS[2]), "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert json.loads((tmp_path / "r" / "results.json").read_text()) == {"benchmark": "pope", **results}
    random = results["splits"]["random"]
    # exact match: "No, there is not." and "Yes, there is a toaster." are neither yes nor no
    assert random["unmatched"] == 2 and random["accuracy"] == 0.5
    assert random["yes_ratio"] == 0.25  # answers that are exactly "yes": ours
    assert random["yes_ratio_lmms_eval"] == 0.5  # lmms-eval's: the labels' yeses, whatever the model said
    assert results["scoring"] == "lmms-eval" and results["f1_mean"] is not None
    wrong = vlpref("eval", "score", "--benchmark", "mme", "--scoring", "lmms-eval", "--answers",
                   str(FIXTURES / "mme" / "results"), "--out", str(tmp_path / "m"))
    assert wrong.returncode == 2 and "--scoring: only pope reads it" in wrong.stderr


def test_the_other_benchmarks_equal_their_scorers():
    assert score("mme", answers=FIXTURES / "mme" / "results") == mme.score_mme_results(FIXTURES / "mme" / "results")
    reviews = [json.loads(x) for x in (FIXTURES / "llava_bench" / "review.jsonl").read_text().splitlines()]
    assert score("llava-bench", judge=FIXTURES / "llava_bench" / "review.jsonl") == llava_bench.summarize(reviews)
    path = FIXTURES / "mtbench" / "model_judgment" / "gpt-4_single.jsonl"
    assert score("mtbench", judge=path) == mtbench.mtbench_scores(
        [json.loads(x) for x in path.read_text().splitlines()])
    responses, annotations = (json.loads((FIXTURES / "amber" / f).read_text())
                              for f in ("responses.json", "annotations.json"))
    assert score("amber", answers=FIXTURES / "amber" / "responses.json",
                 metadata=FIXTURES / "amber" / "annotations.json") == amber.amber_discriminative(responses, annotations)


def test_cli_writes_the_report_and_names_bad_input(tmp_path):
    out = vlpref("eval", "score", "--benchmark", "mmvet", "--judge",
                 str(FIXTURES / "mmvet" / "llava_gpt-4-0613-grade-2runs.json"), "--metadata",
                 str(FIXTURES / "mmvet" / "mm-vet.json"), "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r" / "results.json").read_text())["benchmark"] == "mmvet"
    assert "| metric | value |" in (tmp_path / "r" / "results.md").read_text()
    (tmp_path / "bad.json").write_text("{not json")
    bad = vlpref("eval", "score", "--benchmark", "mmhal", "--answers", str(tmp_path / "bad.json"), "--judge",
                 str(tmp_path / "bad.json"), "--out", str(tmp_path / "r2"))
    assert bad.returncode == 2 and "bad.json: not valid JSON" in bad.stderr and "Traceback" not in bad.stderr
    unknown = vlpref("eval", "score", "--benchmark", "mmbench", "--out", str(tmp_path / "r3"))
    assert unknown.returncode == 2 and "unknown benchmark 'mmbench'" in unknown.stderr
