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
    # random: predictions yes, no, no, yes vs labels yes, no, yes, no -> tp 1, fp 1, tn 1, fn 1
    assert results["random"]["accuracy"] == 0.5 and results["random"]["f1"] == 0.5
    # adversarial: "yes" (no '.', no 'No'/'no'/'not') is yes, "No, it is not." is no -> tp 1, fn 1
    assert results["adversarial"]["recall"] == 0.5 and results["adversarial"]["precision"] == 1.0
    assert results["adversarial"]["yes_ratio"] == 0.5


def test_pope_answers_must_fit_the_questions(pope_files, tmp_path):
    answers, random, adversarial = pope_files
    with pytest.raises(VlprefError, match="2 answer.s. match no question"):
        score("pope", answers=answers, labels=[random])
    short = write_jsonl(tmp_path / "short.jsonl", [{"question_id": 1, "text": "Yes"}])
    with pytest.raises(VlprefError, match=r"no answer for 3 question\(s\) of .*coco_pope_random.json"):
        score("pope", answers=short, labels=[random])
    with pytest.raises(VlprefError, match="pope: --labels is required"):
        score("pope", answers=answers)


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
