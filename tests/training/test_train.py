"""The training loop end to end on a tiny LLaVA: what trains changes and nothing else does, resume equals an
uninterrupted run, the reference cache is reused, 2 processes equal 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from tests.training.conftest import make_pairs
from vlpref.training.config import TrainConfig
from vlpref.training.params import part_of
from vlpref.training.trainer import Trainer, train


def config(model: str, data: Path, **overrides) -> TrainConfig:
    settings = dict(method="dpo", data=str(data), model=model, lr=5e-3, batch_size=2, grad_accum=2, max_steps=3,
                    warmup_ratio=0.0, device="cpu")
    if overrides.get("finetune", "lora") == "lora":  # `lora` with finetune full is refused (it would not be read)
        settings["lora"] = {"r": 4, "alpha": 8, "dropout": 0.1}
    return TrainConfig(**{**settings, **overrides})


def write_yaml(cfg: TrainConfig, path: Path) -> Path:
    """The keys the config was given, as a recipe file (a key a setting does not read is refused, so not all)."""
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json(exclude_unset=True))))
    return path


def _torchrun(config_path: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vlpref",
                           "train", "--config", str(config_path), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_lora_dpo_changes_the_adapters_and_nothing_else(tiny_dirs, pairs_dir, tmp_path):
    trainer = Trainer(config(tiny_dirs["llava"], pairs_dir), tmp_path / "run", log=lambda *a: None)
    before = {n: p.detach().clone() for n, p in trainer.trainable.named_parameters()}
    trainer.run()
    after = dict(trainer.trainable.named_parameters())
    trained = [n for n, p in after.items() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    for name, p in after.items():
        changed = not torch.equal(before[name], p.detach())
        assert changed == p.requires_grad, name
    # the exported model: LoRA merged into the language model; vision tower and projector untouched
    base = load_file(Path(tiny_dirs["llava"]) / "model.safetensors")
    merged = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert set(base) == set(merged)
    for name in base:
        if part_of(name) != "language":
            assert torch.equal(base[name], merged[name]), name
    assert any(not torch.equal(base[n], merged[n]) for n in base if n.endswith("q_proj.weight"))
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_full_finetune_trains_projector_not_vision(tiny_dirs, pairs_dir, tmp_path):
    cfg = config(tiny_dirs["qwen2_vl"], pairs_dir, finetune="full", freeze_projector=False, projector_lr=1e-3,
                 lr=2e-3, max_steps=2)
    trainer = Trainer(cfg, tmp_path / "run", log=lambda *a: None)
    before = {n: p.detach().clone() for n, p in trainer.trainable.named_parameters()}
    trainer.run()
    names = {id(p): n for n, p in trainer.trainable.named_parameters()}
    for group in trainer.optimizer.param_groups:  # the projector (Qwen's visual.merger) at its own rate
        parts = {part_of(names[id(p)]) for p in group["params"]}
        assert group["initial_lr"] == (1e-3 if parts == {"projector"} else 2e-3) and len(parts) == 1
    for name, p in trainer.trainable.named_parameters():
        part = part_of(name)
        assert p.requires_grad == (part != "vision"), name
        if part == "vision":
            assert torch.equal(before[name], p.detach()), name
    changed = [n for n, p in trainer.trainable.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any(part_of(n) == "projector" for n in changed) and any(part_of(n) == "language" for n in changed)


def test_resume_gives_the_uninterrupted_losses(tiny_dirs, pairs_dir, tmp_path, monkeypatch):
    cfg = config(tiny_dirs["llava"], pairs_dir, max_steps=None, epochs=2, batch_size=1, save_every=2)
    train(cfg, tmp_path / "straight", log=lambda *a: None)  # 8 pairs / 2 per step x 2 epochs = 8 steps
    expected = losses(tmp_path / "straight")
    assert len(expected) == 8

    calls = {"n": 0}
    original = Trainer.micro_loss

    def crash_in_step_6(self, batch, normaliser):  # 2 micro-batches per step: call 11 is in step 6
        calls["n"] += 1
        if calls["n"] == 11:
            raise RuntimeError("simulated crash")
        return original(self, batch, normaliser)

    monkeypatch.setattr(Trainer, "micro_loss", crash_in_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "resumed", log=lambda *a: None)
    assert len(losses(tmp_path / "resumed")) == 5  # steps 1-5 logged, the checkpoint is at step 4
    monkeypatch.setattr(Trainer, "micro_loss", original)
    messages = []
    train(cfg, tmp_path / "resumed", log=messages.append)
    assert any("resumed from" in m and "step-000004" in m for m in messages)
    assert losses(tmp_path / "resumed") == expected  # exactly, step for step


def test_resume_refuses_other_settings(tiny_dirs, pairs_dir, tmp_path):
    train(config(tiny_dirs["llava"], pairs_dir, max_steps=1), tmp_path / "run", log=lambda *a: None)
    with pytest.raises(Exception, match="other training settings"):
        train(config(tiny_dirs["llava"], pairs_dir, max_steps=1, beta=0.5), tmp_path / "run", log=lambda *a: None)


def test_reference_log_probs_are_cached_by_content(tiny_dirs, tmp_path):
    data = make_pairs(tmp_path / "pairs")
    cache = tmp_path / "ref.sqlite"
    messages = []
    for run in ("a", "b"):
        train(config(tiny_dirs["llava"], data, max_steps=1, reference_cache=str(cache)), tmp_path / run,
              log=messages.append)
    assert any(m.startswith("reference log-probs: computed 8 example(s) in ") for m in messages)
    assert "reference log-probs: 8 of 8 cached" in messages
    Image.new("RGB", (32, 32), (0, 0, 0)).save(data / "images" / "red.png")  # pairs 0 and 6 show it
    messages.clear()
    train(config(tiny_dirs["llava"], data, max_steps=1, reference_cache=str(cache)), tmp_path / "c",
          log=messages.append)
    assert "reference log-probs: 6 of 8 cached" in messages
    assert any(m.startswith("reference log-probs: computed 2 example(s) in ") for m in messages)


def test_online_reference_equals_precomputed(tiny_dirs, pairs_dir, tmp_path):
    rows = {}
    for reference in ("precomputed", "online"):
        cfg = config(tiny_dirs["gemma3"], pairs_dir, reference=reference, max_steps=2)
        train(cfg, tmp_path / reference, log=lambda *a: None)
        rows[reference] = [json.loads(x) for x in (tmp_path / reference / "log.jsonl").read_text().splitlines()]
    for a, b in zip(rows["precomputed"], rows["online"], strict=True):
        for key in ("loss", "rewards/margins", "logps/chosen"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


def test_image_contrast_pairs_fall_back_to_unshared(tiny_dirs, tmp_path):
    data = make_pairs(tmp_path / "pairs", contrast=True)
    messages = []
    train(config(tiny_dirs["idefics3"], data, max_steps=2), tmp_path / "run", log=messages.append)
    assert any("1 pair(s) have their own rejected images" in m for m in messages)


def test_sft_loss_goes_down(tiny_dirs, sft_dir, tmp_path):
    cfg = config(tiny_dirs["qwen2_5_vl"], sft_dir, method="sft", finetune="full", lr=1e-2, max_steps=8, batch_size=3,
                 grad_accum=1, schedule="constant")
    train(cfg, tmp_path / "run", log=lambda *a: None)
    found = losses(tmp_path / "run")
    assert found[-1] < 0.5 * found[0]


@pytest.mark.parametrize("contrast", [False, True], ids=["same-images", "with-image-contrast"])
def test_two_processes_give_the_losses_of_one(tiny_dirs, tmp_path, contrast):
    """torchrun with 2 CPU processes (gloo), batch 1 x 2 processes x 2 accumulation = the global batch of 1 process
    with batch 2 x 2. With an image-contrast pair in the data, the processes run different numbers of forward
    passes per micro-batch (that pair is scored apart), which must not desynchronise them."""
    pairs_dir = make_pairs(tmp_path / "pairs", contrast=contrast)
    one = config(tiny_dirs["llava"], pairs_dir, batch_size=2, max_steps=3, lora={"r": 4, "alpha": 8, "dropout": 0})
    two = one.model_copy(update={"batch_size": 1})
    train(one, tmp_path / "one", log=lambda *a: None)
    done = _torchrun(write_yaml(two, tmp_path / "two.yaml"), tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in " ".join(done.stderr.split())  # the console writes to stderr and wraps
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5, abs=1e-6)


def test_gradient_checkpointing_keeps_the_losses(tiny_dirs, pairs_dir, tmp_path):
    plain = config(tiny_dirs["qwen2_5_vl"], pairs_dir, lora={"r": 4, "alpha": 8, "dropout": 0})
    train(plain, tmp_path / "plain", log=lambda *a: None)
    train(plain.model_copy(update={"gradient_checkpointing": True}), tmp_path / "ckpt", log=lambda *a: None)
    assert losses(tmp_path / "ckpt") == pytest.approx(losses(tmp_path / "plain"), rel=1e-5, abs=1e-6)


def test_a_processor_from_another_checkpoint_is_named(tmp_path, pairs_dir):
    from vlpref.errors import VlprefError
    from vlpref.models.tiny import build_tiny

    model, _ = build_tiny("llava")  # 32-px images: 16 image tokens
    _, other = build_tiny("llava", image_size=48)  # its processor makes 36
    model.save_pretrained(tmp_path / "mixed")
    other.save_pretrained(tmp_path / "mixed")
    with pytest.raises(VlprefError, match="processor's inputs do not fit the model"):
        train(config(str(tmp_path / "mixed"), pairs_dir), tmp_path / "run", log=lambda *a: None)


def test_settings_that_would_train_wrongly_are_refused(tiny_dirs, pairs_dir):
    with pytest.raises(ValueError, match="adapters disabled, which still has the projector"):
        config(tiny_dirs["llava"], pairs_dir, reference="online", freeze_projector=False)
    with pytest.raises(ValueError, match="lose AdamW updates"):
        config(tiny_dirs["llava"], pairs_dir, dtype="bfloat16", finetune="full")
    config(tiny_dirs["llava"], pairs_dir, dtype="bfloat16", finetune="full", mixed_precision="bf16")  # fine


def test_bf16_full_weights_train_in_float32(tiny_dirs, pairs_dir, tmp_path):
    cfg = config(tiny_dirs["llava"], pairs_dir, dtype="bfloat16", mixed_precision="bf16", freeze_projector=False,
                 max_steps=1)
    trainer = Trainer(cfg, tmp_path / "run", log=lambda *a: None)
    trained = {n: p.dtype for n, p in trainer.trainable.named_parameters() if p.requires_grad}
    assert any(part_of(n) == "projector" for n in trained) and set(trained.values()) == {torch.float32}
    trainer.run()
    assert (tmp_path / "run" / "adapter" / "trained_in_full.safetensors").is_file()


@pytest.mark.parametrize("finetune, contrast, extra", [
    ("lora", False, {}), ("lora", True, {}), ("full", False, {}),
    ("lora", False, {"objective": "povid", "gradient_checkpointing": True})],
    ids=["lora", "lora-image-contrast", "full", "povid-checkpointing"])
def test_fsdp_two_processes_give_the_losses_of_one_and_resume_exactly(tiny_dirs, tmp_path, finetune, contrast,
                                                                      extra):
    """`sharding: fsdp` over 2 CPU processes: the losses and trained weights of 1 unsharded process (global batch
    equal); a resume from a gathered checkpoint continues with the uninterrupted sharded run's losses exactly.
    POVID adds a forward under the noised image to each step, and gradient checkpointing replays blocks in the
    backward: both must keep the gathered weights alive."""
    pairs_dir = make_pairs(tmp_path / "pairs", contrast=contrast)
    lora = {"lora": {"r": 4, "alpha": 8, "dropout": 0}} if finetune == "lora" else {}
    one = config(tiny_dirs["llava"], pairs_dir, batch_size=2, max_steps=3, finetune=finetune, lr=1e-3,
                 save_every=1, reference="precomputed", **lora, **extra)
    two = one.model_copy(update={"batch_size": 1, "sharding": "fsdp"})
    train(one, tmp_path / "one", log=lambda *a: None)
    done = _torchrun(write_yaml(two, tmp_path / "two.yaml"), tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5, abs=1e-6)
    # the exported model: whole weights, equal to the unsharded run's
    exported = [load_file(tmp_path / run / "model" / "model.safetensors") for run in ("one", "two")]
    assert exported[0].keys() == exported[1].keys()
    assert max((exported[0][k] - exported[1][k]).abs().max().item() for k in exported[0]) < 1e-4
    # resume from the step-2 checkpoint (gathered, then sharded again): step 3 as the uninterrupted sharded run
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    for name in ("checkpoints/step-000003", "model", "adapter", "summary.json"):
        path = resumed / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    again = _torchrun(tmp_path / "two.yaml", resumed)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and losses(resumed) == losses(tmp_path / "two")
