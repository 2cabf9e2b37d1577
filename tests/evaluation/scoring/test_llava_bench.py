"""LLaVA-Bench (In-the-Wild) scoring by hand, on a 6-question fixture in the official file layout."""

import json
from pathlib import Path

import pytest

from vlpref.evaluation.scoring.llava_bench import (
    FAILED,
    PARAPHRASED_RULE,
    SYSTEM_PROMPT,
    caption_text,
    parse_score,
    review_prompt,
    review_record,
    review_requests,
    summarize,
)

FIXTURES = Path(__file__).parent / "fixtures" / "llava_bench"


def _jsonl(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def _requests(**changes):
    files = {"questions": _jsonl("questions.jsonl"), "contexts": _jsonl("context.jsonl"),
             "reference_answers": _jsonl("answers_gpt4.jsonl"), "model_answers": _jsonl("answers_model.jsonl"),
             "rules": json.loads((FIXTURES / "rule.json").read_text())}
    return review_requests(**(files | changes))


def test_prompt_layout_reference_is_assistant_1():
    requests = _requests()
    assert len(requests) == 6
    rule = json.loads((FIXTURES / "rule.json").read_text())["llava_bench_conv"]["prompt"]
    # question 3: image 002.jpg, whose caption is a list of two sentences -> joined by one newline
    assert requests[3]["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": (
            "[Context]\nA wooden bowl holds three green apples.\nA knife lies beside the bowl.\n\n"
            "[Question]\nHow many apples are in the bowl?\n\n"
            "[Assistant 1]\nThree.\n\n[End of Assistant 1]\n\n"              # the GPT-4 reference
            "[Assistant 2]\nThere are three apples.\n\n[End of Assistant 2]\n\n"  # the model under test
            f"[System]\n{rule}\n\n")},
    ]
    assert {k: v for k, v in requests[3].items() if k != "messages"} == {
        "id": 4, "question_id": 3, "answer1_id": "ref3", "answer2_id": "m3", "category": "llava_bench_conv"}
    # question 0: image 001.jpg has a plain-string caption, used as it is
    assert requests[0]["messages"][1]["content"].startswith(
        "[Context]\nA grey cat sleeps on a red sofa next to a sunny window.\n\n[Question]\nWhat animal is on the sofa?")
    assert [r["category"] for r in requests] == ["llava_bench_" + c for c in
                                                 ("conv", "detail", "complex", "conv", "complex", "complex")]


def test_prompt_role_and_rule_come_from_the_rule_entry():
    text = review_prompt("cap", "q?", "ref", "mine", "RULE", role="AI")
    assert text == ("[Context]\ncap\n\n[Question]\nq?\n\n[AI 1]\nref\n\n[End of AI 1]\n\n"
                    "[AI 2]\nmine\n\n[End of AI 2]\n\n[System]\nRULE\n\n")


def test_paraphrased_rule_keeps_the_output_format():
    # the parser depends on these instructions; the paraphrase must still ask for them
    for phrase in ("first line", "only the two scores", "Assistant 1's first", "single space", "1 to 10"):
        assert phrase in PARAPHRASED_RULE


def test_caption_join_quirk():
    assert caption_text(["a.", "b."]) == "a.\nb."
    assert caption_text("a cat") == "a cat"
    # the official script's '\n'.join on a plain string puts a newline between characters
    assert caption_text("a cat", join_characters=True) == "a\n \nc\na\nt"
    requests = _requests(join_caption_characters=True)
    assert requests[0]["messages"][1]["content"].startswith("[Context]\nA\n \ng\nr\ne\ny")
    assert "three green apples.\nA knife" in requests[3]["messages"][1]["content"]  # lists are unaffected


def test_requests_refuse_misaligned_lines():
    answers = _jsonl("answers_model.jsonl")
    answers[0], answers[1] = answers[1], answers[0]  # the official zip would judge question 0 against answer 1
    with pytest.raises(ValueError, match=r"line 1: question_id 0 but reference answer 0 and model answer 1"):
        _requests(model_answers=answers)
    with pytest.raises(ValueError, match=r"6 questions, 6 reference answers and 5 model answers"):
        _requests(model_answers=_jsonl("answers_model.jsonl")[:5])


def test_requests_clear_errors():
    contexts = _jsonl("context.jsonl")[:1]
    with pytest.raises(ValueError, match=r"question 3: no context line for image '002.jpg'"):
        _requests(contexts=contexts)
    rules = json.loads((FIXTURES / "rule.json").read_text())
    del rules["llava_bench_detail"]
    with pytest.raises(ValueError, match=r"question 1: no rule for category 'llava_bench_detail'"):
        _requests(rules=rules)
    questions = _jsonl("questions.jsonl")
    del questions[2]["text"]
    with pytest.raises(ValueError, match=r"question 2 has no 'text' field"):
        _requests(questions=questions)


def test_parse_score_official_quirks():
    assert parse_score("8 6") == (8.0, 6.0)
    assert parse_score("8.5 7\nexplanation 1 2") == (8.5, 7.0)  # only line 1 is read
    assert parse_score("8,6") == (8.0, 6.0)              # ',' -> ' ' leaves one space
    assert parse_score("8 6\r\nwhy") == (8.0, 6.0)       # float() strips the '\r'
    assert parse_score("8, 6") == FAILED                  # '8  6' splits into three tokens
    assert parse_score("8 6 ") == FAILED                  # trailing space: three tokens
    assert parse_score("8\t6") == FAILED                  # one token
    assert parse_score("Scores: 8 6") == FAILED
    assert parse_score("eight six") == FAILED             # two tokens, float() refuses
    assert parse_score("") == FAILED
    assert FAILED == (-1.0, -1.0)


def test_fixture_tuples_are_what_the_parser_gives():
    for record in _jsonl("review.jsonl"):
        assert parse_score(record["content"]) == tuple(record["tuple"]), record["question_id"]


def test_review_record_rebuilds_the_official_review_line():
    requests = _requests()
    for request, expected in zip(requests, _jsonl("review.jsonl"), strict=True):
        assert review_record(request, expected["content"]) == expected


def test_summary_by_hand_official_failures_kept():
    # tuples (reference, model): conv (8,6) (-1,-1); detail (9,7); complex (8,8) (10,5) (-1,-1)
    got = summarize(_jsonl("review.jsonl"))
    assert list(got) == ["all", "llava_bench_complex", "llava_bench_conv", "llava_bench_detail"]  # sorted, as printed
    # all: reference (8+9+8-1+10-1)/6 = 33/6 = 5.5, model (6+7+8-1+5-1)/6 = 24/6 = 4.0 -> 4/5.5 = 72.73 %
    assert got["all"] == {"relative": 72.7, "reference": 55.0, "model": 40.0, "reviews": 6, "failures": 2}
    # conv: reference (8-1)/2 = 3.5, model (6-1)/2 = 2.5 -> 2.5/3.5 = 71.43 %
    assert got["llava_bench_conv"] == {"relative": 71.4, "reference": 35.0, "model": 25.0, "reviews": 2,
                                       "failures": 1}
    # detail: 7/9 = 77.78 %
    assert got["llava_bench_detail"] == {"relative": 77.8, "reference": 90.0, "model": 70.0, "reviews": 1,
                                         "failures": 0}
    # complex: reference 17/3 = 5.6667 -> 5.667, model 12/3 = 4.0 -> 4/5.667 = 70.58 %; 5.667 x 10 = 56.67 -> 56.7
    assert got["llava_bench_complex"] == {"relative": 70.6, "reference": 56.7, "model": 40.0, "reviews": 3,
                                          "failures": 1}


def test_summary_drop_failures():
    got = summarize(_jsonl("review.jsonl"), drop_failures=True)
    # all: reference (8+9+8+10)/4 = 8.75, model (6+7+8+5)/4 = 6.5 -> 6.5/8.75 = 74.29 %
    assert got["all"] == {"relative": 74.3, "reference": 87.5, "model": 65.0, "reviews": 4, "failures": 2}
    # conv: (8,6) alone -> 75 %; complex: reference 18/2 = 9, model 13/2 = 6.5 -> 72.22 %
    assert got["llava_bench_conv"]["relative"] == 75.0 and got["llava_bench_conv"]["reviews"] == 1
    assert got["llava_bench_complex"] == {"relative": 72.2, "reference": 90.0, "model": 65.0, "reviews": 2,
                                          "failures": 1}


def test_means_are_rounded_to_3_decimals_before_the_ratio():
    reviews = [{"category": "c", "tuple": t} for t in ([1, 2], [1, 2], [2, 1])]
    # reference 4/3 -> 1.333, model 5/3 -> 1.667: 1.667/1.333 = 125.06 % -> 125.1 (unrounded means: 125.0)
    assert summarize(reviews)["c"]["relative"] == 125.1


def test_ties_and_reviews_without_category():
    reviews = [{"category": "llava_bench_conv", "tuple": [7, 7]}, {"tuple": [6, 3]}]
    got = summarize(reviews)
    assert got["llava_bench_conv"]["relative"] == 100.0          # a tie is 100 %
    assert set(got) == {"all", "llava_bench_conv"}               # no empty 'detail'/'complex' entries
    # the uncategorised review counts in 'all' only: reference (7+6)/2 = 6.5, model (7+3)/2 = 5 -> 76.92 %
    assert got["all"] == {"relative": 76.9, "reference": 65.0, "model": 50.0, "reviews": 2, "failures": 0}


def test_summary_clear_errors():
    with pytest.raises(ValueError, match="no reviews"):
        summarize([])
    with pytest.raises(ValueError, match=r"review 1 \(question_id 7\): 'tuple' \(or 'score'\) must be two numbers"):
        summarize([{"tuple": [8, 6]}, {"question_id": 7, "tuple": [8]}])
    with pytest.raises(ValueError, match=r"review 0 .*must be two numbers, got None"):
        summarize([{"scores": [8, 6]}])
    with pytest.raises(ValueError, match=r"'c': all 1 reviews failed to parse"):
        summarize([{"category": "c", "tuple": [-1, -1]}, {"category": "d", "tuple": [5, 5]}], drop_failures=True)
    with pytest.raises(ValueError, match=r"'all': mean reference score rounds to 0"):
        summarize([{"tuple": [-1, -1]}, {"tuple": [1, 4]}])


def test_decimal_scores_are_summed_in_file_order_as_the_official_summary():
    """The official summary takes `np.asarray(tuples).mean(0)`: numpy adds a column's values one review after the
    other. On this file (decimal judge scores) an exact sum gives a model mean of 7.537 and 92.0; the official
    order gives 7.538 and 92.1."""
    reviews = _jsonl("review_decimal.jsonl")
    got = summarize(reviews)["all"]
    assert got == {"relative": 92.1, "reference": 81.9, "model": 75.4, "reviews": 8, "failures": 0}
    np = pytest.importorskip("numpy")  # the official computation itself, where numpy is installed
    means = [round(x, 3) for x in np.asarray([r["tuple"] for r in reviews]).mean(0).tolist()]
    assert got["relative"] == round(means[1] / means[0] * 100, 1)


def test_review_files_whose_pair_is_named_score():
    """Older review files name the pair `score` (and have no category); the official summary reads them."""
    reviews = _jsonl("review_score.jsonl")
    assert "tuple" not in reviews[0]
    # reference (6.5 + 9.5 + 10) / 3 = 8.667, model (9.6 + 6.8 + 5.6) / 3 = 7.333: 7.333 / 8.667 = 84.6 %
    assert summarize(reviews) == {"all": {"relative": 84.6, "reference": 86.7, "model": 73.3, "reviews": 3,
                                          "failures": 0}}
