"""Judge answers parsed into scores: hand-written answers in each layout, with the decoration real judges add."""

import json

from vlpref.annotations.rubric import judge_prompt, load_rubric, parse_json_ratings, parse_ratings, ratings_schema

VLF = """### Output

#### Helpfulness Assessment
##### Output for Text 1
Rating: 4
Rationale: Answers the question.
##### Output for Text 2
**Rating:** 2/5
Rationale: Vague.

#### Ethical Considerations Assessment
##### Output for Text 1
Rating: 5
Rationale: Harmless.
##### Output for Text 2
Rating: 5
Rationale: Harmless.

#### **Visual Faithfulness Assessment**
##### Output for Text 1
Rating: 5
Rationale: Matches the image.
##### Output for Text 2
Rating: 1
Rationale: There is no dog.
"""


def test_prompt_lists_every_response():
    rubric = load_rubric("vlfeedback")
    text = judge_prompt(rubric, "What is it?", ["A red circle.", "A dog."])
    assert "Instruction: What is it?" in text and "- <text 1> A red circle.\n- <text 2> A dog." in text
    assert "Rating: [Rating]" in text  # the output format the parser reads


def test_vlfeedback_layout():
    scores, status = parse_ratings(load_rubric("vlfeedback"), VLF, n=2)
    assert status == "ok"
    assert [scores[0][a].score for a in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")] == [4, 5, 5]
    assert [scores[1][a].score for a in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")] == [2, 5, 1]
    assert scores[1]["Visual Faithfulness"].rationale == "There is no dog."


def test_out_of_scale_and_missing_are_none_not_guessed():
    broken = VLF.replace("Rating: 1\n", "Rating: 7\n").replace("##### Output for Text 2\nRating: 5\nRationale: "
                                                              "Harmless.\n", "")
    scores, status = parse_ratings(load_rubric("vlfeedback"), broken, n=2)
    assert status == "partial"
    assert scores[1]["Visual Faithfulness"].score is None and scores[1]["Ethical Considerations"].score is None
    assert parse_ratings(load_rubric("vlfeedback"), "I cannot rate these.", n=2)[1] == "failed"


def test_helpsteer_layout():
    raw = ("### Response 1\nReasoning: correct and clear.\nHelpfulness: 4\nCorrectness: 4\nCoherence: 4\n"
           "Complexity: 1\nVerbosity: 2\n\n**Response 2**\nReasoning: invents a dog.\nHelpfulness: 1\n"
           "Correctness: 0\nCoherence: 3\nComplexity: 1\nVerbosity: 2\n")
    scores, status = parse_ratings(load_rubric("helpsteer"), raw, n=2)
    assert status == "ok"
    assert scores[1]["Correctness"].score == 0 and scores[1]["Correctness"].rationale == "invents a dog."
    assert sum(scores[0][a].score for a in ("Helpfulness", "Correctness", "Coherence")) == 12


def test_structured_answers():
    rubric = load_rubric("helpsteer")
    schema = ratings_schema(rubric, 2)
    assert schema["properties"]["responses"]["minItems"] == 2
    item = {a: {"rationale": "r", "rating": 3} for a in rubric.aspects}
    raw = json.dumps({"responses": [{"index": 2, **item}, {"index": 1, **item, "Verbosity": {"rating": 9}}]})
    scores, status = parse_json_ratings(rubric, raw, 2)
    assert status == "partial" and scores[0]["Verbosity"].score is None and scores[1]["Verbosity"].score == 3
    assert parse_json_ratings(rubric, "{not json", 2)[1] == "failed"


def test_decorated_answers_real_judges_write():
    rubric = load_rubric("vlfeedback")
    raw = ("#### Helpfulness Assessment\n- **Output for Text 1**\nRating: [4]\nRationale: Good,\nbut short.\n\n"
           "##### Output for Text 2 (the dog answer)\nRating: 2\nRationale: Off.\n"
           "#### Ethical Considerations Assessment\n##### Output for Text 1\nRating: 5\nRationale: ok\n"
           "##### Output for Text 2\nRating: 5\nRationale: ok\n"
           "#### Visual Faithfulness Assessment\n##### Output for Text 1\nRating: 4.5\nRationale: ok\n"
           "##### Output for Text 2\nRating: 1\nRationale: ok\n")
    scores, status = parse_ratings(rubric, raw, 2)
    assert status == "ok"
    assert scores[0]["Helpfulness"].score == 4 and scores[0]["Helpfulness"].rationale == "Good, but short."
    assert scores[1]["Helpfulness"].score == 2 and scores[0]["Visual Faithfulness"].score == 4.5
    helpsteer = load_rubric("helpsteer")
    one_line = ("### Response 1\nReasoning: fine.\nHelpfulness: 3, Correctness: 4, Coherence: 4, Complexity: 1, "
                "Verbosity: 2\n### Response 2\nReasoning: meh.\n1. Helpfulness: 1\n2. Correctness: 0\n"
                "3. Coherence: 3\n4. Complexity: 1\n5. Verbosity: 2\n")
    scores, status = parse_ratings(helpsteer, one_line, 2)
    assert status == "ok" and scores[0]["Correctness"].score == 4 and scores[1]["Coherence"].score == 3


def test_fenced_json_and_text_fallback():
    rubric = load_rubric("helpsteer")
    item = {a: {"rationale": "r", "rating": 2} for a in rubric.aspects}
    fenced = "```json\n" + json.dumps({"responses": [{"index": 1, **item}]}) + "\n```"
    assert parse_json_ratings(rubric, fenced, 1)[1] == "ok"
    text = "### Response 1\nReasoning: r\nHelpfulness: 2\nCorrectness: 2\nCoherence: 2\nComplexity: 2\nVerbosity: 2"
    assert parse_json_ratings(rubric, text, 1)[1] == "ok"
