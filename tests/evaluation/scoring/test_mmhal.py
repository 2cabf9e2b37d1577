"""MMHal-Bench by hand: rating extraction, the official summary, the judge prompt and the official file layout."""

import doctest
import json
from pathlib import Path

import pytest

from vlpref.evaluation.scoring import mmhal
from vlpref.evaluation.scoring.mmhal import (
    MMHAL_QUESTION_TYPES,
    PARAPHRASED_TEMPLATE,
    RATING_OPTIONS,
    mmhal_item,
    mmhal_judge_prompt,
    mmhal_judge_text,
    mmhal_rating,
    mmhal_ratings_found,
    mmhal_summary,
    score_mmhal,
    score_mmhal_files,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mmhal"


def test_docstring_examples():
    assert doctest.testmod(mmhal).failed == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("Explanation.\nRating: 5, very informative, no hallucination", 5),
    ("RATING: 0", 0),                                    # case-insensitive
    ("rating: 3 ... to repeat, Rating: 3", 3),           # the same rating twice is still one rating
    ("Rating: 4.5", 4),                                  # substring test: '4.5' starts with '4'
    ("Rating:5", None),                                  # no space after the colon: not found
    ("Score: 5", None),
    ("Rating: 7", None),                                 # outside 0..6
    ("Rating: 2 or maybe Rating: 5", None),              # two different ratings
    ("", None),
])
def test_rating_extraction(text, expected):
    assert mmhal_rating(text) == expected


def test_echoing_the_option_list_finds_every_rating():
    echoed = "".join(f"- Rating: {k}, {RATING_OPTIONS[k]}\n" for k in range(7))
    assert mmhal_ratings_found(echoed) == [0, 1, 2, 3, 4, 5, 6]
    item = mmhal_item(echoed + "My choice: Rating: 6", "holistic")
    assert (item.score, item.parsed, item.hallucinated) == (0, False, True)  # official: several -> 0


def test_items_and_summary_by_hand():
    items = [mmhal_item("Rating: 6", "attribute"), mmhal_item("Rating: 3", "attribute"),
             mmhal_item("Rating: 2", "counting"), mmhal_item("no verdict", "counting")]
    # scores 6, 3, 2, 0 -> average 11/4 = 2.75; below 3: the 2 and the failure -> 2/4 = 0.5
    # attribute (6 + 3)/2 = 4.5, counting (2 + 0)/2 = 1.0
    got = mmhal_summary(items)
    assert got["average"] == pytest.approx(2.75)
    assert got["hallucination_rate"] == pytest.approx(0.5)
    assert got["per_type"] == {"attribute": pytest.approx(4.5), "counting": pytest.approx(1.0)}
    assert (got["n"], got["parse_failures"], got["failed"]) == (4, 1, [3])
    assert items[1].hallucinated is False and items[2].hallucinated is True   # the line is between 2 and 3


def test_fixture_by_hand():
    got = score_mmhal_files(FIXTURES / "response.json", FIXTURES / "evaluation.json")
    # judge texts -> scores (types follow the official i % 8 cycle):
    #  0 attribute   'Rating: 5, ...'               5
    #  1 adversarial 'rating: 1'                    1
    #  2 comparison  'Rating: 6, ...'               6
    #  3 counting    no rating                      0  (failure)
    #  4 relation    'Rating: 3' twice              3
    #  5 environment 'Rating: 4' and 'Rating: 2'    0  (failure: two different)
    #  6 holistic    'RATING: 2, ...'               2
    #  7 other       'Rating:3' (no space)          0  (failure)
    #  8 attribute   'Rating: 4'                    4
    #  9 adversarial 'Rating: 6'                    6
    # sum 27 over 10 -> 2.7; below 3: items 1, 3, 5, 6, 7 -> 5/10 = 0.5
    assert got["average"] == pytest.approx(2.7)
    assert got["hallucination_rate"] == pytest.approx(0.5)
    assert got["per_type"] == pytest.approx({"attribute": 4.5, "adversarial": 3.5, "comparison": 6.0,
                                             "counting": 0.0, "relation": 3.0, "environment": 0.0,
                                             "holistic": 2.0, "other": 0.0})   # (5+4)/2, (1+6)/2, the rest single
    assert list(got["per_type"]) == list(MMHAL_QUESTION_TYPES)
    assert (got["n"], got["parse_failures"], got["failed"]) == (10, 3, [3, 5, 7])
    assert got["official_order"] is True


def test_reordered_records_are_flagged_and_grouped_by_their_own_type():
    records = json.loads((FIXTURES / "response.json").read_text())
    outputs = json.loads((FIXTURES / "evaluation.json").read_text())
    got = score_mmhal(records[::-1], outputs[::-1])
    assert got["official_order"] is False
    assert got["per_type"]["attribute"] == pytest.approx(4.5)          # still (5 + 4)/2: pairs moved together


def test_mismatches_and_bad_inputs_raise():
    records = json.loads((FIXTURES / "response.json").read_text())
    outputs = json.loads((FIXTURES / "evaluation.json").read_text())
    with pytest.raises(ValueError, match="10 MMHal records but 9 judge outputs"):
        score_mmhal(records, outputs[:9])
    bad = [dict(records[0], question_type="colour")]
    with pytest.raises(ValueError, match="MMHal record 0: question_type 'colour'"):
        score_mmhal(bad, ["Rating: 5"])
    with pytest.raises(ValueError, match=r"judge output 1: neither a string nor a chat completion"):
        score_mmhal(records[:2], ["Rating: 5", {"choices": []}])
    with pytest.raises(ValueError, match="message content is NoneType"):
        mmhal_judge_text({"choices": [{"message": {"content": None}}]})
    with pytest.raises(ValueError, match="unknown MMHal question_type"):
        mmhal_item("Rating: 5", "Attribute")
    with pytest.raises(ValueError, match="no MMHal items"):
        mmhal_summary([])


def test_plain_string_outputs_score_like_saved_completions():
    records = json.loads((FIXTURES / "response.json").read_text())
    outputs = json.loads((FIXTURES / "evaluation.json").read_text())
    texts = [o["choices"][0]["message"]["content"] for o in outputs]
    assert score_mmhal(records, texts) == score_mmhal(records, outputs)


def test_evaluation_file_must_be_an_array(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text('{"0": "Rating: 5"}')
    with pytest.raises(ValueError, match="expected a JSON array"):
        score_mmhal_files(FIXTURES / "response.json", path)


def test_judge_prompt_slots_and_elements():
    record = {"image_content": ["Dog", "Umbrella", "Beach"], "question": "What is under the umbrella?",
              "gt_answer": "A dog.", "model_answer": "A dog lying on the sand.", "image_id": "abc"}
    text = mmhal_judge_prompt(record)
    assert text.endswith("### Image Contents\nDog, Umbrella, Beach\n\n### Question\nWhat is under the umbrella?\n\n"
                         "### Standard Human-Generated Answer\nA dog.\n\n"
                         "### LMM Response to Evaluate\nA dog lying on the sand.\n")
    for k in range(7):                                   # the full scale, in the 'Rating: k' form the parser reads
        assert f"- Rating: {k}, {RATING_OPTIONS[k]}\n" in text
    assert text.count("### Example ") == 5
    assert PARAPHRASED_TEMPLATE.count("{}") == 4 and "{" not in PARAPHRASED_TEMPLATE.replace("{}", "")


def test_judge_prompt_custom_template_and_errors():
    record = {"image_content": ["A", "B"], "question": "Q {x}", "gt_answer": "G", "model_answer": ""}
    assert mmhal_judge_prompt(record, template="[{}|{}|{}|{}]") == "[A, B|Q {x}|G|]"   # braces in values are inert
    with pytest.raises(ValueError, match="MMHal record 'i9': missing field 'model_answer'"):
        mmhal_judge_prompt({"image_id": "i9", "image_content": [], "question": "q", "gt_answer": "g"})
    with pytest.raises(ValueError, match="image_content must be a list of strings"):
        mmhal_judge_prompt(dict(record, image_content="A, B"))
