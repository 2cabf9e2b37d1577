"""`bench train-all` on a real layout's code path (tiny widths, CPU): every run trains with finite losses, the
step-1 losses are the hand values at the initial weights, and the exported models load and generate; in bf16 too,
as on the GPU."""

import math
from dataclasses import replace

import pytest

from vlpref.bench.layouts import LAYOUTS
from vlpref.bench.train_all import EXPORTED, RUNS, bench_train_all


def test_every_objective_and_method_trains_and_exports():
    layout = replace(LAYOUTS["qwen2-vl-2b"].shrunk(vocab_size=1000), image_size=32)  # 16 image tokens: fast
    result = bench_train_all(layout, batch=2, steps=2, device="cpu", answer_words=12)
    runs = result["runs"]
    assert set(runs) == set(RUNS) and result["all_finite"] and result["all_exported_generate"]
    ln2 = math.log(2)
    # step 1 scores the initial weights, which are also the reference: each DPO term is -log σ(0) = ln 2, and
    # mDPO adds two more (the image-conditional and anchor terms); POVID is 0.5 (ln 2 + ln 2)
    for name in ("dpo", "dpo-reference-online", "dpo-gradient-checkpointing", "dpo-full", "povid"):
        assert runs[name]["losses"][0] == pytest.approx(ln2, abs=1e-6), name
    assert runs["mdpo"]["losses"][0] == pytest.approx(3 * ln2, abs=1e-6)
    for name in ("sft", "rs", "steerlm"):  # NLL per token of a random model over 1000 entries: about ln 1000
        assert runs[name]["losses"][0] == pytest.approx(math.log(1000), abs=0.1), name
    # LoRA r16 on 2 layers of q, k, v, o (64->64, 64->32, 64->32, 64->64), gate, up (64->128), down (128->64):
    # 16 x (128 + 96 + 96 + 128 + 192 + 192 + 192) = 16,384 a layer
    assert runs["dpo"]["trainable_parameters"] == 2 * 16_384
    assert runs["dpo-full"]["trainable_parameters"] > runs["dpo"]["trainable_parameters"]
    for name in EXPORTED:
        assert runs[name]["export"]["generated_tokens"] >= 1, name


def test_bf16_lora_and_full_runs_train_and_export():
    layout = replace(LAYOUTS["qwen2-vl-2b"].shrunk(vocab_size=1000), image_size=32)
    result = bench_train_all(layout, dtype="bfloat16", batch=2, steps=2, device="cpu", answer_words=12,
                             runs=("dpo", "dpo-full"))
    assert result["all_finite"] and result["all_exported_generate"] and result["errors"] == []
    assert result["runs"]["dpo"]["losses"][0] == pytest.approx(math.log(2), abs=1e-6)
    # full fine-tuning's policy runs on fp32 master weights, its precomputed reference on the bf16 ones
    assert result["runs"]["dpo-full"]["losses"][0] == pytest.approx(math.log(2), abs=1e-3)


def test_unknown_run_is_named():
    with pytest.raises(ValueError, match="dpo-fast"):
        bench_train_all(runs=("dpo-fast",))
