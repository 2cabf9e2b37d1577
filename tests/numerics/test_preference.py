"""Preference objectives against values worked out by hand (comments give the arithmetic)."""

import math

import pytest
import torch

from vlpref.numerics.preference import (
    PairLogps,
    dpo_loss,
    mdpo_loss,
    metrics,
    noised_argmax_logps,
    povid_loss,
)


def example(**kw) -> PairLogps:
    # Δ_w = -10 - (-11) = 1, Δ_l = -12 - (-11) = -1, margin h = 2; 4 chosen tokens, 2 rejected
    return PairLogps(chosen=torch.tensor([-10.0]), rejected=torch.tensor([-12.0]), ref_chosen=torch.tensor([-11.0]),
                     ref_rejected=torch.tensor([-11.0]), chosen_tokens=torch.tensor([4]),
                     rejected_tokens=torch.tensor([2]), **kw)


def softplus(x: float) -> float:  # -log sigmoid(-x) = log(1 + e^x)
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("kwargs, expected", [
    ({}, softplus(-0.2)),                                                    # -log σ(0.1·2) = 0.59813
    ({"label_smoothing": 0.1}, 0.9 * softplus(-0.2) + 0.1 * softplus(0.2)),  # conservative DPO: 0.61813
    ({"loss_type": "robust", "label_smoothing": 0.1},
     (0.9 * softplus(-0.2) - 0.1 * softplus(0.2)) / 0.8),                   # rDPO: 0.57313
    ({"loss_type": "hinge"}, 0.8),                                           # max(0, 1 - 0.2)
    ({"loss_type": "ipo"}, (1 / 4 - (-1) / 2 - 5) ** 2),                    # (0.75 - 1/(2·0.1))² = 18.0625
    ({"length_normalized": True}, softplus(-0.1 * ((-2.5 + 2.75) - (-6 + 5.5)))),  # per-token: h = 0.75
    ({"sft_weight": 1.0}, softplus(-0.2) + 10),                             # + summed NLL of the chosen
])
def test_dpo_family(kwargs, expected):
    out = dpo_loss(example(), beta=0.1, **kwargs)
    assert out.losses.item() == pytest.approx(expected, abs=1e-6)


def test_rewards_and_trl_metric_names():
    logps = example()
    out = dpo_loss(logps, beta=0.1)
    assert metrics(out, logps) == pytest.approx({
        "rewards/chosen": 0.1, "rewards/rejected": -0.1, "rewards/margins": 0.2, "rewards/accuracies": 1.0,
        "logps/chosen": -10.0, "logps/rejected": -12.0})


def test_gradient_pushes_chosen_up_and_rejected_down():
    chosen, rejected = torch.tensor([-10.0], requires_grad=True), torch.tensor([-12.0], requires_grad=True)
    logps = PairLogps(chosen, rejected, torch.tensor([-11.0]), torch.tensor([-11.0]))
    dpo_loss(logps, beta=0.1).loss.backward()
    # d/dh of -log σ(βh) = -β σ(-βh): chosen gets -0.1·σ(-0.2) = -0.04502, rejected the opposite
    assert chosen.grad.item() == pytest.approx(-0.1 / (1 + math.exp(0.2)), abs=1e-6)
    assert rejected.grad.item() == pytest.approx(0.1 / (1 + math.exp(0.2)), abs=1e-6)


def test_noised_argmax_scored_under_clean_logits():
    labels = torch.tensor([[-100, 1, 2, -100]])  # the response y_w is positions 1 and 2; then padding
    # noisy argmax: token 2, then token 0 (and token 2 at the unscored position, where the clean log-prob is -inf:
    # masking must not turn it into NaN)
    noisy = torch.tensor([[[0.0, 0.0, 9.0], [9.0, 0.0, 0.0], [0.0, 0.0, 9.0], [0.0, 0.0, 0.0]]])
    # clean logits prefer other tokens (1, then 2), so taking the argmax from them would give another value
    clean = torch.tensor([[[0.0, math.log(3), math.log(2)], [math.log(3), 0.0, math.log(4)], [0.0, 0.0, -math.inf],
                           [0.0, 0.0, 0.0]]])
    # position 0 over (1, 3, 2)/6 -> token 2: log(2/6); position 1 over (3, 1, 4)/8 -> token 0: log(3/8)
    expected = math.log(2 / 6) + math.log(3 / 8)
    assert noised_argmax_logps(clean, noisy, labels).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="agree"):
        noised_argmax_logps(clean, noisy, labels[:, 1:])


def test_povid_stage_two_averages_two_dpo_losses():
    text = example()
    noise = PairLogps(text.chosen, torch.tensor([-11.0]), text.ref_chosen, torch.tensor([-10.0]))  # h = 1 - (-1)
    assert povid_loss(text, noise, beta=0.1)[0].losses.item() == pytest.approx(
        0.5 * softplus(-0.2) + 0.5 * softplus(-0.2), abs=1e-6)
    noise2 = PairLogps(text.chosen, torch.tensor([-11.0]), text.ref_chosen, torch.tensor([-11.0]))  # h = 1
    combined, noise_side = povid_loss(text, noise2, beta=0.1)
    assert combined.losses.item() == pytest.approx(0.5 * softplus(-0.2) + 0.5 * softplus(-0.1), abs=1e-6)
    assert combined.rejected_rewards.item() == pytest.approx(-0.1)  # the text side's, as POVID logs
    assert noise_side.rejected_rewards.item() == pytest.approx(0.0)
    # an NLL term on y_w is added once, not once per side: + 1.0 · 10
    with_nll = povid_loss(text, noise2, beta=0.1, sft_weight=1.0)[0].losses.item()
    assert with_nll == pytest.approx(0.5 * softplus(-0.2) + 0.5 * softplus(-0.1) + 10, abs=1e-6)


def test_mdpo_adds_conditional_and_anchor_terms():
    # Δ_w = 1; under the corrupted image Δ_w' = -10.5 - (-11) = 0.5
    out = mdpo_loss(example(), torch.tensor([-10.5]), torch.tensor([-11.0]), beta=0.1)
    expected = softplus(-0.2) + softplus(-0.1 * (1 - 0.5)) + softplus(-0.1 * 1)  # 0.59813 + 0.66874 + 0.64440
    assert out.losses.item() == pytest.approx(expected, abs=1e-6)
    with_nll = mdpo_loss(example(), torch.tensor([-10.5]), torch.tensor([-11.0]), beta=0.1, sft_weight=0.5)
    assert with_nll.losses.item() == pytest.approx(expected + 0.5 * 10, abs=1e-6)  # + 0.5 · NLL(y_w) = 5


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(example(), label_smoothing=0.5)
    with pytest.raises(ValueError, match="token counts"):
        dpo_loss(PairLogps(*[torch.zeros(1)] * 4), loss_type="ipo")
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(example(), loss_type="kto")
    with pytest.raises(ValueError, match="sigmoid and robust"):
        dpo_loss(example(), loss_type="hinge", label_smoothing=0.1)


@pytest.fixture(scope="module")
def trl_inputs(tmp_path_factory):
    from vlpref.bench.dpo import build_inputs

    return build_inputs(tmp_path_factory.mktemp("trl"), pairs=2, answer_words=12)


@pytest.mark.parametrize(("loss_type", "label_smoothing", "beta"),
                         [("sigmoid", 0.0, 0.1), ("robust", 0.2, 0.1), ("hinge", 0.0, 2.0), ("ipo", 0.0, 0.5)])
def test_loss_types_match_trl(trl_inputs, tmp_path, loss_type, label_smoothing, beta):
    """Each loss type TRL 1.16 shares with us gives TRL's step-1 loss: same tiny LLaVA, same batch, a reference that
    differs from the policy. (TRL's sigmoid ignores label smoothing, so conservative DPO is checked by hand above.)"""
    from vlpref.bench.dpo import run_trl, step1_loss_ours

    settings = {"loss_type": loss_type, "label_smoothing": label_smoothing, "beta": beta}
    theirs = run_trl(trl_inputs["policy"], trl_inputs["trl_dataset"], 2, 1, tmp_path, trl_inputs["other"],
                     **settings)["step1_loss"]
    ours = step1_loss_ours(trl_inputs["policy"], trl_inputs["other"], trl_inputs["pairs"], 2, **settings)
    assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-6)  # the bench target: |diff| <= 1e-4
