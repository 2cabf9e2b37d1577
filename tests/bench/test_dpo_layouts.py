"""`bench dpo` on a real layout's code path (tiny widths, CPU, fp32): both sides train on the same pairs, score the
same tokens and agree on each side's step-1 log-probs; the CLI refuses what it cannot run in one line."""

import math
from dataclasses import replace

import pytest

from vlpref.bench.dpo import bench_dpo, epoch_order
from vlpref.bench.layouts import LAYOUTS
from vlpref.training.trainer import global_batch


def test_trl_reads_the_pairs_in_our_trainers_batches():
    order = epoch_order(pairs=12, batch=4)
    assert sorted(order) == list(range(12))
    for step in range(3):  # TRL's sequential step k is dataset rows 4k .. 4k+3 of the reordered data
        assert order[4 * step : 4 * step + 4] == global_batch(step, 12, 4, 0, 3)


def test_real_layout_lora_step1_sides_agree_with_trl():
    layout = replace(LAYOUTS["qwen2-vl-2b"].shrunk(vocab_size=1000), image_size=32)  # 16 image tokens: fast
    result = bench_dpo(batch=2, steps=2, threads=2, layout=layout, dtype="float32", device="cpu", answer_words=12)
    assert result["finetune"] == "lora" and result["layout"] == "qwen2-vl-2b@tiny"
    step1 = result["step1"]
    assert step1["tokens_identical"] is True
    # 12 words + "." + <|im_end|>: every chosen answer is 14 tokens; a rejected one drops 0-10 words
    assert step1["tokens_chosen"] == step1["trl_tokens_chosen"] == [14, 14]
    assert all(4 <= n <= 14 for n in step1["tokens_rejected"])
    for side in ("chosen", "rejected"):  # summed log-probs of ~14 tokens at ~ln(1000) each: about -97
        assert step1[f"logps_{side}_abs_diff"] <= 1e-3, side
        assert step1[f"logps_{side}"] / sum(step1[f"tokens_{side}"]) * 2 == pytest.approx(-math.log(1000), abs=0.5)
    for key in ("pairs_per_s", "trl_pairs_per_s", "speedup", "speedup_one_epoch", "peak_mem_mb", "trl_peak_mem_mb",
                "flops_per_s", "trl_flops_per_s", "matmul_peak_flops_per_s", "mfu", "trl_mfu"):
        assert result[key] > 0, key
    assert "loss_abs_diff" not in result  # the second-model loss check runs on the tiny layout only


def test_cli_refuses_an_unknown_layout_in_one_line():
    from tests.test_cli import vlpref

    out = vlpref("bench", "dpo", "--layout", "llava-7b")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "llava-1.5-7b" in out.stderr  # the valid names are listed
