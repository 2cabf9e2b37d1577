"""`vlpref bench dpo`: our DPO step against TRL's `DPOTrainer`, in one process, on the same model, data and batch.

    vlpref bench dpo --json runs/bench-dpo.json            # CPU: a tiny LLaVA-1.5-shaped model, 4 pairs a step

The model is LLaVA-1.5's layout at tiny width: a 336-px image in 14-px patches is 576 image tokens, answers are about
100 tokens, the language model and vision tower are the tiny test sizes (`models.tiny`), the vocabulary is the tiny
word tokenizer's. Both sides train every weight (vision tower included), fp32 on CPU, AdamW at a constant 1e-5, β 0.1,
sigmoid loss, the same batch size, with a reference model: TRL's default (a frozen copy run every step), ours
precomputed once (`reference: precomputed`). TRL runs first, so anything the process keeps from it counts against
us in the memory figure.

Keys:
- `pairs_per_s`: our training step's rate (median over steps, the first excluded); `trl_pairs_per_s`: TRL's,
  measured the same way from step end to step end; `speedup` = pairs_per_s / trl_pairs_per_s. Our step has no
  reference forward pass, since the reference log-probs are computed once before training (`reference_seconds`);
  `speedup_one_epoch` charges that whole cost to a single epoch of the bench data, `speedup_three_epochs` to three
  (what Silkie, Li–Lin–Pei and POVID's stage 1 train for).
- `loss_abs_diff`: |our step-1 loss − TRL's| with the same weights and batch and a reference that differs from the
  policy (a second tiny model), so that the loss is not trivially ln 2.
- `peak_mem_mb`, `trl_peak_mem_mb`: peak resident memory of the process during each run (Linux VmHWM, reset before
  each run); on a GPU, torch's peak allocated memory.
- `flops_per_s`: our model FLOPs per second (forward + backward of a step, counted by torch's FlopCounterMode, over
  the steady step time); `matmul_peak_flops_per_s`: a large fp32 matmul's rate on this machine; `mfu` their ratio.
Target: speedup >= 2 with loss_abs_diff <= 1e-4 and peak memory not above TRL's.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import torch

IMAGE_SIZE, PATCH = 336, 14  # LLaVA-1.5: (336 / 14)^2 = 576 image tokens
QUESTION = "describe the image in detail . what shape and what color is each object ?"


# -- the shared model and data ----------------------------------------------------------------------------------
def build_inputs(root: Path, pairs: int, answer_words: int = 100, seed: int = 0) -> dict:
    """A tiny LLaVA-1.5-shaped model (and a second one, the loss check's reference), `pairs` preference pairs in
    vlpref's layout and the same pairs as a TRL dataset."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    from vlpref.data.schema import PreferencePair, Turn
    from vlpref.data.store import write_records
    from vlpref.models.tiny import save_tiny
    from vlpref.models.tokenizer import BASE_WORDS

    models = {name: save_tiny("llava", root / name, image_size=IMAGE_SIZE, vision={"patch_size": PATCH}, seed=s)
              for name, s in (("policy", seed), ("other", seed + 1))}
    words = [w for w in BASE_WORDS if w.isalpha()]
    rng, pixels = random.Random(seed), np.random.RandomState(seed)
    (root / "pairs" / "images").mkdir(parents=True, exist_ok=True)
    records, rows = [], {"images": [], "prompt": [], "chosen": [], "rejected": []}
    for i in range(pairs):
        image = Image.fromarray(pixels.randint(0, 256, (8, 8, 3), dtype=np.uint8)).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                                         Image.NEAREST)
        image.save(root / "pairs" / "images" / f"{i}.png")
        chosen = " ".join(rng.choice(words) for _ in range(answer_words)) + " ."
        rejected = " ".join(rng.choice(words) for _ in range(answer_words - rng.randint(0, 10))) + " ."
        records.append(PreferencePair(id=f"p{i}", prompt_id=f"q{i}", images=[f"images/{i}.png"],
                                      turns=[Turn(role="user", text=f"<image>\n{QUESTION}")], chosen=chosen,
                                      rejected=rejected, strategy="bench"))
        # TRL's form of the same pair: string content, TRL puts the image block before the text as ours does
        rows["images"].append([image])
        rows["prompt"].append([{"role": "user", "content": QUESTION}])
        rows["chosen"].append([{"role": "assistant", "content": chosen}])
        rows["rejected"].append([{"role": "assistant", "content": rejected}])
    write_records(root / "pairs", "pairs", records)
    return {"policy": models["policy"], "other": models["other"], "pairs": root / "pairs",
            "trl_dataset": Dataset.from_dict(rows)}


# -- measuring ---------------------------------------------------------------------------------------------------
def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:  # Linux: writing 5 to clear_refs resets the process's peak resident set (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def _peak_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """The rate of an n x n matmul (fp32 on CPU, bf16 on GPU): what this machine's matmul units deliver."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - began)


# -- TRL ---------------------------------------------------------------------------------------------------------
def run_trl(model_dir: Path, dataset, batch: int, steps: int, out: Path, ref_dir: Path | None = None,
            loss_type: str = "sigmoid", label_smoothing: float = 0.0, beta: float = 0.1) -> dict:
    """TRL's DPOTrainer for `steps` steps on `dataset` in order (sequential sampler, so step 1's batch is
    dataset[0:batch]); its default reference (a frozen copy of the policy, run every step) unless `ref_dir`."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL's trainer pings the hub otherwise

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends, self.losses = [], {}

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses[state.global_step] = logs["loss"]

    # from_pretrained, not the in-memory model: TRL rebuilds its default reference from config._name_or_path
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    ref = LlavaForConditionalGeneration.from_pretrained(ref_dir, dtype=torch.float32) if ref_dir else None
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                     max_steps=steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, beta=beta,
                     loss_type=[loss_type], label_smoothing=label_smoothing, max_length=2048, bf16=False, fp16=False,
                     use_cpu=not torch.cuda.is_available(), activation_checkpointing=False,
                     train_sampling_strategy="sequential", dataloader_num_workers=0, logging_steps=1,
                     save_strategy="no", report_to="none", seed=0, disable_tqdm=True)
    clock = Clock()
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dataset,
                         processing_class=AutoProcessor.from_pretrained(model_dir), callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # it prints every log row when tqdm is off
    _reset_peak()
    began = time.perf_counter()
    trainer.train()
    intervals = [b - a for a, b in zip([began, *clock.ends], clock.ends, strict=False)]
    return {"step_seconds": intervals, "peak_mem_mb": _peak_mb(), "step1_loss": clock.losses.get(1)}


# -- ours --------------------------------------------------------------------------------------------------------
def run_ours(model_dir: Path, pairs: Path, batch: int, steps: int, out: Path) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from vlpref.training.config import TrainConfig
    from vlpref.training.trainer import Trainer

    config = TrainConfig(method="dpo", data=str(pairs), model=str(model_dir), finetune="full", freeze_vision=False,
                         freeze_projector=False, lr=1e-5, schedule="constant", warmup_ratio=0.0, beta=0.1,
                         batch_size=batch, grad_accum=1, max_steps=steps, max_length=2048, seed=0,
                         save_each_epoch=False, save_minutes=0)  # no checkpoint inside the timed steps
    _reset_peak()
    trainer = Trainer(config, out, resume=False, log=lambda *a: None)  # precomputes the reference (timed on its own)
    trainer.run()
    peak = _peak_mb()
    seconds = [row["seconds"] for row in _rows(out / "log.jsonl")]
    batch_examples = trainer.examples[:batch]
    with FlopCounterMode(display=False) as counter:
        loss, _ = trainer.micro_loss(batch_examples, float(batch))
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return {"step_seconds": seconds, "reference_seconds": trainer.reference_seconds, "peak_mem_mb": peak,
            "flops_per_step": counter.get_total_flops()}


def _rows(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def step1_loss_ours(model_dir: Path, ref_dir: Path, pairs: Path, batch: int, loss_type: str = "sigmoid",
                    label_smoothing: float = 0.0, beta: float = 0.1) -> float:
    """Our DPO loss on the first `batch` pairs (TRL's step-1 batch) with the policy's initial weights and `ref_dir`
    as the reference: prefix-shared scoring, as training runs it."""
    from vlpref.models.vlm import VLM
    from vlpref.numerics.preference import PairLogps, dpo_loss
    from vlpref.training.data import load_examples
    from vlpref.training.forward import score_examples

    policy, ref = VLM.load(str(model_dir)), VLM.load(str(ref_dir))
    examples, _ = load_examples(pairs, policy, "pairs", max_length=2048)
    with torch.no_grad():
        mine, _ = score_examples(policy, examples[:batch], pairs)
        theirs, _ = score_examples(ref, examples[:batch], pairs)
    counts = torch.tensor([[len(r) for r in e.responses] for e in examples[:batch]])
    logps = PairLogps(mine[:, 0], mine[:, 1], theirs[:, 0], theirs[:, 1], counts[:, 0], counts[:, 1])
    return dpo_loss(logps, beta, loss_type, label_smoothing).loss.item()


def bench_dpo(batch: int = 4, steps: int = 20, threads: int | None = 2, work: Path | None = None) -> dict:
    import tempfile

    import transformers

    if threads and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work or tmp)
        inputs = build_inputs(root, pairs=batch * steps)
        trl = run_trl(inputs["policy"], inputs["trl_dataset"], batch, steps, root / "trl")
        check = run_trl(inputs["policy"], inputs["trl_dataset"], batch, 1, root / "trl-check", inputs["other"])
        ours = run_ours(inputs["policy"], inputs["pairs"], batch, steps, root / "ours")
        our_loss = step1_loss_ours(inputs["policy"], inputs["other"], inputs["pairs"], batch)
    steady = statistics.median(ours["step_seconds"][1:])
    trl_steady = statistics.median(trl["step_seconds"][1:])
    pairs_per_s, trl_pairs_per_s = batch / steady, batch / trl_steady

    def with_reference(epochs: int) -> float:  # our rate when the reference precompute is spread over `epochs`
        return epochs * batch * steps / (ours["reference_seconds"] + epochs * steps * steady) / trl_pairs_per_s

    flops_per_s = ours["flops_per_step"] / steady
    peak = matmul_peak_flops()
    import trl as trl_package

    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} "
                                                                                  "threads)",
        "model": "tiny LLaVA-1.5 layout (576 image tokens, ~100-token answers), fp32, full fine-tuning",
        "batch_size": batch, "steps": steps,
        "pairs_per_s": pairs_per_s, "trl_pairs_per_s": trl_pairs_per_s, "speedup": pairs_per_s / trl_pairs_per_s,
        "speedup_one_epoch": with_reference(1), "speedup_three_epochs": with_reference(3),
        "reference_seconds": ours["reference_seconds"],
        "loss": our_loss, "trl_loss": check["step1_loss"], "loss_abs_diff": abs(our_loss - check["step1_loss"]),
        "peak_mem_mb": ours["peak_mem_mb"], "trl_peak_mem_mb": trl["peak_mem_mb"],
        "flops_per_s": flops_per_s, "matmul_peak_flops_per_s": peak, "mfu": flops_per_s / peak,
        "step_seconds": [round(s, 4) for s in ours["step_seconds"]],
        "trl_step_seconds": [round(s, 4) for s in trl["step_seconds"]],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl_package.__version__},
    }
