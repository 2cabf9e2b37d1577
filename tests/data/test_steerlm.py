"""SteerLM conditioning: the exact suffix Li–Lin–Pei use, steering a pool member, and clear errors."""

from __future__ import annotations

import pytest

from tests.test_cli import vlpref
from vlpref.candidates.sample import PoolMember
from vlpref.data.schema import Prompt, Turn
from vlpref.data.steerlm import TOP, parse_targets, steered
from vlpref.errors import ConfigError, VlprefError

PROMPT = Prompt(id="q", images=["a.png"], turns=[Turn(role="user", text="<image>\nWhat is it?"),
                                                 Turn(role="assistant", text="A cat.")])


def test_steered_appends_the_attribute_request_to_the_last_user_turn():
    turns = steered(PROMPT.query, TOP)
    assert turns[-1].text == ("<image>\nWhat is it?\nPlease answer the question such that your response is in the "
                              "following attributes in 5-point Likert scale:\n"
                              "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4")
    assert PROMPT.query[-1].text == "<image>\nWhat is it?"  # the prompt itself is untouched


def test_parse_targets_round_trips_and_names_bad_parts():
    assert parse_targets("Helpfulness:4, Correctness:3,Coherence:4,Complexity:1,Verbosity:2")["Correctness"] == 3
    with pytest.raises(ValueError, match="unknown attribute 'Helpfullness'"):
        parse_targets("Helpfullness:4")
    with pytest.raises(ValueError, match="Verbosity: 'x' is not a number"):
        parse_targets("Verbosity:x")
    with pytest.raises(ValueError, match="missing Coherence, Complexity, Verbosity"):
        steered(PROMPT.query, {"Helpfulness": 4, "Correctness": 4})


def test_a_steered_pool_member_answers_the_steered_question():
    member = PoolMember(model="world:world-base", steer=TOP)
    assert member.query(PROMPT) == steered(PROMPT.query, TOP)
    assert PoolMember(model="world:world-base").query(PROMPT) == PROMPT.query
    with pytest.raises((ConfigError, ValueError), match="missing Verbosity"):
        PoolMember(model="world:world-base", steer={k: 4 for k in TOP if k != "Verbosity"})


def test_world_eval_rejects_a_bad_steer_option():
    out = vlpref("world", "eval", "--steer", "Helpfulness:4")
    assert out.returncode == 2 and "--steer: steering needs a value for every HelpSteer attribute" in out.stderr


def test_in_range_targets_are_the_medians_of_each_tasks_best_rated_responses():
    from vlpref.data.steerlm import in_range_targets

    def record(task, h, cx, v):
        scores = {"Helpfulness": h, "Correctness": h, "Coherence": 4, "Complexity": cx, "Verbosity": v}
        return PROMPT.model_copy(update={"meta": {"task": task, "scores": scores}})

    records = [record("pope", 4, 0, 1), record("pope", 4, 0, 2), record("pope", 4, 1, 2), record("pope", 2, 3, 4),
               record("describe", 3, 2, 2), record("describe", 3, 4, 3), record("describe", 1, 0, 0)]
    targets = in_range_targets(records)
    # pope: the three Helpfulness-4 answers; medians of (0,0,1) and (1,2,2); the Helpfulness-2 answer is left out
    assert targets["pope"] == {"Helpfulness": 4, "Correctness": 4, "Coherence": 4, "Complexity": 0, "Verbosity": 2}
    # describe: the two Helpfulness-3 answers; median_low of (2,4) is 2 and of (2,3) is 2 (values the data holds)
    assert targets["describe"] == {"Helpfulness": 3, "Correctness": 3, "Coherence": 4, "Complexity": 2,
                                   "Verbosity": 2}


def test_world_steering_is_for_every_question_or_per_task():
    from vlpref.evaluation.world import steer_spec, steer_targets

    four = "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4"
    low = "Helpfulness:4,Correctness:4,Coherence:4,Complexity:0,Verbosity:1"
    assert steer_targets(four) == {"*": TOP}
    per_task = steer_targets(f"describe={four}; pope={low}; count={low}")  # count: a short question's kind
    assert per_task["describe"] == TOP and per_task["pope"]["Verbosity"] == 1 == per_task["count"]["Verbosity"]
    assert steer_targets(steer_spec(per_task)) == per_task and steer_spec(TOP) == four
    for bad, message in ((f"open={four}", "unknown task 'open'"),
                         (f"pope={four};pope={low}", "'pope' is given twice"),
                         (f"{four};pope={low}", "not both"), ("pope=Helpfulness:4", "missing Correctness")):
        with pytest.raises(VlprefError, match=message):
            steer_targets(bad)
