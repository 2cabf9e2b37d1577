"""The oracle judge and the hallucination injector."""

from __future__ import annotations

import json

import pytest

from vlpref.data.schema import Candidate
from vlpref.world.claims import check_response
from vlpref.world.inject import WorldInjector
from vlpref.world.judge import OracleJudge
from vlpref.world.parse import parse_claims
from vlpref.world.scenes import NUMBER_WORDS, Scene
from vlpref.world.tasks import build_split


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    return build_split(tmp_path_factory.mktemp("world"), "eval", images=40)


def cand(prompt, text, name="c"):
    return Candidate(id=f"{prompt.id}/{name}", prompt_id=prompt.id, model_id=name, text=text)


def rank(annotation) -> float:
    """Each paper's ranking rule: VLFeedback the mean of its three aspects; Li-Lin-Pei (HelpSteer) the sum of
    Helpfulness, Correctness and Coherence (methods.md §1.1, §2.1)."""
    if annotation.rubric == "vlfeedback":
        return annotation.mean_score()
    return sum(annotation.aspects[k].score for k in ("Helpfulness", "Correctness", "Coherence"))


def test_oracle_prefers_ground_truth_over_any_injection(prompts):
    """The issue's bar is >= 99% of 1,000 cases (README); here every case of a 40-scene sample must hold."""
    judge, injector = OracleJudge(), WorldInjector(seed=1)
    kinds = set()
    for p in prompts:
        injected = injector.inject(p, p.reference)
        kinds.add(injected.kind)
        for rubric, key in (("vlfeedback", "Visual Faithfulness"), ("helpsteer", "Correctness")):
            truth, fake = judge.annotate(p, [cand(p, p.reference, "gt"), cand(p, injected.text, "inj")], rubric)
            assert rank(truth) > rank(fake), (p.id, rubric, injected)
            assert fake.aspects[key].score < truth.aspects[key].score
    assert kinds == {"object", "attribute", "relation", "flip"}


def test_injections_are_real_hallucinations_and_keep_most_text(prompts):
    injector = WorldInjector(seed=2)
    for p in [p for p in prompts if p.meta["task"] == "describe"]:
        for kind in ("object", "attribute", "relation"):
            try:
                out = injector.inject(p, p.reference, kind=kind)
            except ValueError:
                continue  # e.g. no two categories to relate in a one-object scene
            facts = check_response(Scene.from_dict(p.meta["scene"]), out.text)
            assert facts.errors, (kind, out)
            assert out.kind == kind
            sentences = {s.strip().rstrip(".") for s in p.reference.split(". ")}
            kept = sentences & {s.strip().rstrip(".") for s in out.text.split(". ")}
            assert len(kept) >= len(sentences) - 1  # at most one sentence changed (an added object: the total)


def test_object_injection_prefers_co_occurring_partner(prompts):
    injector = WorldInjector(seed=3)
    p = next(p for p in prompts if p.meta["task"] == "describe"
             and {o["category"] for o in p.meta["scene"]["objects"]} == {"circle"})
    assert "square" in injector.inject(p, p.reference, kind="object").text


def test_object_injection_restates_the_total_and_keeps_reading_order(prompts):
    """An injected object is counted in the answer's total and inventory and sits in reading order, as in the sft
    split's believed captions: "There are four objects." followed by five is a rejection no model writes."""
    injector = WorldInjector(seed=5)
    for p in [p for p in prompts if p.meta["task"] in ("describe", "open")][:20]:
        scene = Scene.from_dict(p.meta["scene"])
        try:
            out = injector.inject(p, p.reference, kind="object")
        except ValueError:
            continue  # no free cell or no absent category
        claims = parse_claims(out.text)
        cells = [(m.row, m.col) for m in claims.objects if m.row is not None]
        assert len(cells) == len(scene.objects) + 1 and cells == sorted(cells), out.text
        total = f"There are {NUMBER_WORDS[len(scene.objects) + 1]} objects."
        assert total in out.text, out.text
        if p.meta["task"] == "open":  # the inventory names the added category
            added = out.detail.split()[2]
            assert added in out.text.split(". ")[0], out.text
    free = next(p for p in prompts if p.meta["task"] == "describe")
    edited = injector.inject(free, "There is one object. It is red.", kind="object").text
    assert edited.startswith("There are two objects.") and edited.count("There is a") == 1, edited


def test_vlfeedback_and_helpsteer_scales_and_rationales(prompts):
    judge = OracleJudge()
    p = next(p for p in prompts if p.meta["task"] == "describe" and len(p.meta["scene"]["objects"]) >= 2)
    [vlf] = judge.annotate(p, [cand(p, "There is a purple hexagon. " + p.reference)], "vlfeedback")
    assert set(vlf.aspects) == {"Helpfulness", "Ethical Considerations", "Visual Faithfulness"}
    assert all(1 <= a.score <= 5 for a in vlf.aspects.values())
    if "hexagon" not in {o["category"] for o in p.meta["scene"]["objects"]}:
        assert "absent hexagon" in vlf.aspects["Visual Faithfulness"].rationale
    assert json.loads(vlf.raw)["errors"] and vlf.judge_id == "world-oracle" and vlf.parse_status == "ok"
    [hs] = judge.annotate(p, [cand(p, "")], "helpsteer")
    assert set(hs.aspects) == {"Helpfulness", "Correctness", "Coherence", "Complexity", "Verbosity"}
    assert all(0 <= a.score <= 4 for a in hs.aspects.values())
    assert hs.aspects["Verbosity"].score == 0 and "Missed:" in hs.aspects["Helpfulness"].rationale


def test_yes_no_and_attribute_answers(prompts):
    judge = OracleJudge()
    for task in ("pope", "color", "count", "position", "relation"):
        p = next(p for p in prompts if p.meta["task"] == task)
        right, = judge.annotate(p, [cand(p, p.reference)])
        assert right.aspects["Helpfulness"].score == 5, (task, p.reference)
    p = next(p for p in prompts if p.meta["task"] == "pope" and p.meta["label"] == "no")
    wrong, = judge.annotate(p, [cand(p, "Yes.")])
    assert wrong.aspects["Helpfulness"].score == 1
    with pytest.raises(ValueError, match="unknown rubric"):
        judge.annotate(p, [cand(p, "Yes.")], rubric="mmhal")


def test_digit_answers_count_as_numbers(prompts):
    judge = OracleJudge()
    p = next(p for p in prompts if p.meta["task"] == "count")
    n = ["zero", "one", "two", "three", "four", "five"].index(p.meta["answer"])
    noun = p.meta["category"] if n == 1 else p.meta["category"] + ("es" if p.meta["category"].endswith("s") else "s")
    digits, = judge.annotate(p, [cand(p, f"There {'is' if n == 1 else 'are'} {n} {noun}.")])
    assert digits.aspects["Helpfulness"].score == 5 and digits.aspects["Visual Faithfulness"].score == 5


def test_attribute_injection_edits_only_its_own_mention(prompts):
    """On open answers ("one circle, one square, ...") a count change must hit the chosen noun and keep grammar."""
    injector = WorldInjector(seed=4)
    for p in [p for p in prompts if p.meta["task"] == "open"]:
        out = injector.inject(p, p.reference, kind="attribute")
        facts = check_response(Scene.from_dict(p.meta["scene"]), out.text)
        assert facts.errors, out
        assert out.detail.split(":")[0] in " ".join(facts.errors), (out.detail, facts.errors)
        assert " one " + "s " not in out.text and "There are one " not in out.text and "There is two" not in out.text
    with pytest.raises(ValueError, match="unknown injection kind 'flip'"):
        injector.inject(next(p for p in prompts if p.meta["task"] == "describe"), "There is a circle.", kind="flip")
