"""Each paper's pair rule on hand-built ratings, where the right pairs are known."""

import random

import pytest

from vlpref.data.schema import Annotation, AspectScore, Candidate, Prompt, Turn
from vlpref.pairs.strategies import (
    Skip,
    best_response,
    helpsteer_pairs,
    image_contrast_pair,
    povid_pair,
    seva_pair,
    steerlm_record,
    vlfeedback_pairs,
)

PROMPT = Prompt(id="p", images=["images/a.png"], turns=[Turn(role="user", text="<image>\nWhat is it?"),
                                                          Turn(role="assistant", text="A red circle.")])


def cand(i: int, text: str | None = None) -> Candidate:
    return Candidate(id=f"p/m{i}/0", prompt_id="p", model_id=f"m{i}", text=text or f"answer {i}")


def rated(i: int, rubric: str = "vlfeedback", **scores) -> Annotation:
    return Annotation(candidate_id=f"p/m{i}/0", prompt_id="p", judge_id="j", rubric=rubric,
                      aspects={k.replace("_", " "): AspectScore(score=v) for k, v in scores.items()})


def vf(i, h, e, f):
    return rated(i, Helpfulness=h, Ethical_Considerations=e, Visual_Faithfulness=f)


def test_vlfeedback_all_pairs_by_mean_ties_dropped():
    # means: m0 = 4, m1 = 3, m2 = 4 (tie with m0), m3 = 2
    anns = [vf(0, 4, 5, 3), vf(1, 3, 3, 3), vf(2, 5, 4, 3), vf(3, 1, 3, 2)]
    pairs, skipped = vlfeedback_pairs(PROMPT, [cand(i) for i in range(4)], anns)
    got = {(p.provenance["chosen_model"], p.provenance["rejected_model"]) for p in pairs}
    assert got == {("m0", "m1"), ("m0", "m3"), ("m1", "m3"), ("m2", "m1"), ("m2", "m3")}  # C(4,2) = 6 minus 1 tie
    assert [s.reason for s in skipped] == ["tie or below margin (4 vs 4)"]
    pair = next(p for p in pairs if p.provenance["rejected_model"] == "m3" and p.provenance["chosen_model"] == "m0")
    assert pair.chosen == "answer 0" and pair.rejected == "answer 3"
    assert pair.chosen_scores == {"Helpfulness": 4, "Ethical Considerations": 5, "Visual Faithfulness": 3}
    assert pair.turns == PROMPT.query and pair.images == ["images/a.png"]


def test_vlfeedback_margin_and_unparsed():
    anns = [vf(0, 4, 4, 4), vf(1, 4, 4, 3), vf(2, 1, 1, 1),
            Annotation(candidate_id="p/m3/0", prompt_id="p", judge_id="j", rubric="vlfeedback",
                       aspects={"Helpfulness": AspectScore(score=None)}, parse_status="failed", error="no rating")]
    pairs, skipped = vlfeedback_pairs(PROMPT, [cand(i) for i in range(4)], anns, margin=0.5)
    # m0 - m1 = 1/3 < 0.5: dropped; m0 > m2 and m1 > m2 kept; m3 never paired
    assert {(p.provenance["chosen_model"], p.provenance["rejected_model"]) for p in pairs} == {("m0", "m2"),
                                                                                              ("m1", "m2")}
    assert any(s.candidate_id == "p/m3/0" and "did not parse" in s.reason for s in skipped)


def hs(i, h, corr, coh, cx=2, v=2):
    return rated(i, "helpsteer", Helpfulness=h, Correctness=corr, Coherence=coh, Complexity=cx, Verbosity=v)


def test_helpsteer_best_vs_random_at_least_two_below():
    # S: m0 = 9, m1 = 11 (best), m2 = 9, m3 = 10 (not <= 9), m4 = 11 (tie with m1; m1 comes first)
    anns = [hs(0, 3, 3, 3), hs(1, 4, 4, 3), hs(2, 3, 3, 3), hs(3, 4, 3, 3), hs(4, 4, 3, 4)]
    cands = [cand(i) for i in range(5)]
    rejected = set()
    for seed in range(30):
        [pair], skipped = helpsteer_pairs(PROMPT, cands, anns, random.Random(seed))
        assert pair.provenance["chosen"] == "p/m1/0" and pair.chosen_scores["S"] == 11
        rejected.add(pair.provenance["rejected"])
        assert skipped == []
    assert rejected == {"p/m0/0", "p/m2/0"}  # uniform over S <= 9: both drawn in 30 tries


def test_helpsteer_skips_small_range():
    anns = [hs(0, 3, 3, 3), hs(1, 3, 3, 4)]
    pairs, skipped = helpsteer_pairs(PROMPT, [cand(0), cand(1)], anns, random.Random(0))
    assert pairs == [] and skipped == [Skip("p", "S range 1 < 2")]


def test_rejection_sampling_and_steerlm_records():
    anns = [hs(0, 1, 1, 1), hs(1, 4, 4, 4, cx=1, v=3)]
    best = best_response(PROMPT, [cand(0), cand(1)], anns)
    assert best.turns[-1] == Turn(role="assistant", text="answer 1") and best.meta["S"] == 12
    steer = steerlm_record(PROMPT, cand(1), anns[1])
    assert steer.turns[0].text.endswith(
        "Likert scale:\nHelpfulness:4,Correctness:4,Coherence:4,Complexity:1,Verbosity:3")
    assert steer.turns[-1].text == "answer 1" and steer.images == PROMPT.images


def test_seva_drops_identical_answers():
    original, same = cand(0, "A red circle."), cand(1, " A red circle.\n")
    assert isinstance(seva_pair(PROMPT, original, same), Skip)
    pair = seva_pair(PROMPT, original, cand(1, "A blue square."))
    assert (pair.chosen, pair.rejected, pair.strategy) == ("A red circle.", "A blue square.", "seva")


def test_povid_chosen_is_ground_truth():
    pair = povid_pair(PROMPT, "A red circle and a knife.", "object")
    assert (pair.chosen, pair.rejected) == ("A red circle.", "A red circle and a knife.")
    assert isinstance(povid_pair(PROMPT, "A red circle.", "object"), Skip)
    no_truth = PROMPT.model_copy(update={"turns": PROMPT.turns[:1]})
    assert "no ground-truth" in povid_pair(no_truth, "x", "object").reason


def test_image_contrast_same_text_other_images():
    pair = image_contrast_pair(PROMPT, "A red circle.", ["images/a-crop.png"], "mdpo-crop")
    assert pair.chosen == pair.rejected and pair.rejected_images == ["images/a-crop.png"]
    with pytest.raises(ValueError, match="rejected_images"):
        image_contrast_pair(PROMPT, "x", ["a.png", "b.png"], "crop")


def test_helpsteer_build_keeps_empty_answers_out_of_the_sft_sets(tmp_path):
    """An empty sampled answer may be a pair's rejected side, but never a rejection-sampling or SteerLM target;
    it is listed in skipped.jsonl with the reason."""
    import json

    from PIL import Image

    from vlpref.data.store import write_records
    from vlpref.pairs.build import PairsConfig, build_pairs

    (tmp_path / "prompts" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "prompts" / "images" / "a.png")
    write_records(tmp_path / "prompts", "prompts", [PROMPT])
    texts = ["A red circle.", "", "A blue square."]
    write_records(tmp_path / "cands", "candidates", [cand(i, texts[i]) if texts[i] else
                                                     cand(i).model_copy(update={"text": ""}) for i in range(3)],
                  prompts=str(tmp_path / "prompts"))
    hs = {"Helpfulness": 4, "Correctness": 4, "Coherence": 4, "Complexity": 1, "Verbosity": 1}
    anns = [rated(i, "helpsteer", **{k: (v if i != 2 else 0) for k, v in hs.items()}) for i in range(3)]
    anns[1] = rated(1, "helpsteer", **{k: 4 for k in hs})  # the empty answer is even rated best
    write_records(tmp_path / "anns", "annotations", anns, candidates=str(tmp_path / "cands"),
                  prompts=str(tmp_path / "prompts"))
    build_pairs(PairsConfig(strategy="helpsteer", annotations=str(tmp_path / "anns")), tmp_path / "out",
                log=lambda *a: None)
    best = (tmp_path / "out" / "rejection-sampling" / "records.jsonl").read_text()
    steer = (tmp_path / "out" / "steerlm" / "records.jsonl").read_text().splitlines()
    assert "A red circle." in best and len(steer) == 2
    skipped = [json.loads(x) for x in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert {"prompt_id": "p", "reason": "empty response: no SFT target for rejection sampling or SteerLM",
            "candidate_id": "p/m1/0"} in skipped


def test_degenerate_answers_are_told_from_fluent_wrong_ones():
    from vlpref.pairs.strategies import degenerate

    assert degenerate("the the the") and degenerate("A red red red circle.") and degenerate("") and degenerate("...")
    assert not degenerate("There is a blue square at the top left.")  # fluent, whether right or wrong
    assert not degenerate("There is a circle. There is a circle.")  # repeats a sentence, not a word in a row
