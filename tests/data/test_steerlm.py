"""SteerLM conditioning: the exact suffix Li–Lin–Pei use, steering a pool member, and clear errors."""

from __future__ import annotations

import pytest

from tests.test_cli import vlpref
from vlpref.candidates.sample import PoolMember
from vlpref.data.schema import Prompt, Turn
from vlpref.data.steerlm import TOP, parse_targets, steered
from vlpref.errors import ConfigError

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
