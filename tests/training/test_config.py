"""A training config refuses, by name, every key its method, objective or finetuning does not read (an unread key
is config that silently does nothing); the keys a choice does read, and keys left out, pass."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vlpref.config import parse
from vlpref.errors import ConfigError
from vlpref.training.config import READ_UNDER, TrainConfig


def refusal(**settings) -> str:
    """The error message of a config with these settings (it must be refused)."""
    with pytest.raises(ValidationError) as info:
        TrainConfig(data="runs/d", **settings)
    return str(info.value)


@pytest.mark.parametrize("method", ["sft", "rs", "steerlm"])
@pytest.mark.parametrize("key, value", [("beta", 0.5), ("objective", "povid"), ("reference", "online")])
def test_dpo_keys_with_an_sft_method(method, key, value):
    assert f"{key} is not read with method: {method}; it is read with method: dpo" in refusal(method=method,
                                                                                               **{key: value})


@pytest.mark.parametrize("key, value, readers", [
    ("loss_type", "ipo", "objective: dpo, method: dpo"),
    ("image_negative", {"op": "mdpo-crop"}, "objective: povid or mdpo, method: dpo"),
    ("reference_cache", "ref.sqlite", "reference: precomputed, method: dpo"),
    ("sft_weight", 1.0, "method: dpo")])
def test_objective_keys_with_an_sft_method_name_the_method(key, value, readers):
    # the method is what rules these out (the key's own objective or reference condition comes after it)
    assert f"{key} is not read with method: sft; it is read with {readers}" in refusal(method="sft", **{key: value})


def test_image_negative_with_objective_dpo():
    message = refusal(method="dpo", objective="dpo", image_negative={"op": "mdpo-crop"})
    assert "image_negative is not read with objective: dpo; it is read with objective: povid or mdpo" in message


@pytest.mark.parametrize("objective", ["povid", "mdpo"])
@pytest.mark.parametrize("key, value", [("loss_type", "hinge"), ("label_smoothing", 0.1),
                                        ("length_normalized", True)])
def test_dpo_family_options_with_povid_and_mdpo(objective, key, value):
    message = refusal(method="dpo", objective=objective, **{key: value})
    assert f"{key} is not read with objective: {objective}; it is read with objective: dpo" in message


def test_reference_cache_with_an_online_reference():
    message = refusal(method="dpo", reference="online", reference_cache="ref.sqlite")
    assert "reference_cache is not read with reference: online; it is read with reference: precomputed" in message


@pytest.mark.parametrize("key, value", [("lora", {"r": 4}), ("merge_lora", False)])
def test_lora_keys_with_full_finetuning(key, value):
    message = refusal(method="dpo", finetune="full", mixed_precision="no", **{key: value})
    assert f"{key} is not read with finetune: full; it is read with finetune: lora" in message


def test_projector_lr_with_a_frozen_projector():
    message = refusal(method="sft", freeze_projector=True, projector_lr=1e-4)
    assert "projector_lr is not read with freeze_projector: true; it is read with freeze_projector: false" in message


def test_a_default_value_written_out_is_refused_too():
    # beta 0.1 is the default, but written with method sft it says something the run will not do
    assert "beta is not read with method: sft" in refusal(method="sft", beta=0.1)


def test_every_unread_key_is_named_on_one_line():
    with pytest.raises(ConfigError) as info:
        parse(TrainConfig, {"method": "sft", "data": "d", "beta": 0.2, "loss_type": "ipo"}, source="train.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.yaml: ")
    assert "beta is not read with method: sft" in lines[0] and "loss_type is not read with method: sft" in lines[0]


def test_keys_that_are_read_or_left_out_pass():
    TrainConfig(method="sft", data="d", lr=1e-4, freeze_projector=False, projector_lr=1e-5)  # no DPO key
    TrainConfig(method="dpo", data="d", objective="povid", image_negative={"op": "mdpo-crop"}, beta=0.2)
    TrainConfig(method="dpo", data="d", objective="dpo", loss_type="ipo", sft_weight=0.1, reference_cache="r.sqlite")
    TrainConfig(method="dpo", data="d", finetune="full", mixed_precision="no", reference="online")
    # an SFT config keeps the DPO keys' defaults, unread: what the trainer hashes for resume does not change
    assert TrainConfig(method="sft", data="d").beta == 0.1


def test_every_conditional_key_is_tested():
    tested = {"beta", "objective", "reference", "loss_type", "image_negative", "reference_cache", "sft_weight",
              "label_smoothing", "length_normalized", "lora", "merge_lora", "projector_lr"}
    assert set(READ_UNDER) == tested
