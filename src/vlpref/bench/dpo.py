"""`vlpref bench dpo`: our DPO step against TRL's `DPOTrainer`, in one process, on the same model, pairs and batches.

    vlpref bench dpo --json runs/bench-dpo.json                       # CPU: the tiny LLaVA-1.5-shaped model
    vlpref bench dpo --layout llava-1.5-7b --finetune lora --dtype bfloat16 --batch-size 8 --steps 8   # one GPU

The model is a `bench.layouts` layout with random weights: `tiny` (the default; LLaVA-1.5's 576 image tokens at the
tiny test widths and the word vocabulary) or a real checkpoint's sizes (LLaVA-1.5-7B, Qwen2-VL-2B, …) built on the
device itself. Answers are about 100 words (one token each), the rejected one 0-10 words shorter. Both sides: AdamW
at a constant 1e-5, β 0.1, sigmoid loss, the same batch size and the same pairs in the same batches (TRL's data is
given in our trainer's epoch order and read sequentially). What trains: `tiny` with full fine-tuning is every weight
(vision tower included, fp32; the bench's original setting); a real layout with `full` the language model and the
projector, with `lora` LoRA r64 α128 (dropout 0) on the language model's linear layers, vision tower frozen.
`bfloat16`: bf16 weights under bf16 autocast on both sides (our full fine-tuning keeps fp32 master weights, TRL's
trains the bf16 weights). Reference: TRL's default (the adapters disabled for LoRA, a frozen copy otherwise, run
every step); ours precomputed once (`reference: precomputed`). TRL runs first, so anything the process keeps from it
counts against us in the memory figure.

Keys:
- `pairs_per_s`, `trl_pairs_per_s`: training-step rates (median over steps, the first excluded, step end to step
  end, the device synchronised); `speedup` their ratio. `speedup_one_epoch` charges our whole reference precompute
  (`reference_seconds`) to one epoch of the bench data, `speedup_three_epochs` to three.
- `step1`: both sides' step-1 `logps/chosen` and `logps/rejected` (batch means of summed log-probs, the policy's
  initial weights, the same pairs) and the tokens each side scored per pair (`tokens_chosen`, `tokens_rejected`,
  `tokens_identical`: the same token ids on both sides, end-of-turn included). The sides are compared separately,
  not only through the loss.
- `loss`, `trl_loss`, `loss_abs_diff` (the `tiny` layout): our and TRL's step-1 loss with the same weights and batch
  and a reference that differs from the policy (a second model), so that the loss is not trivially ln 2; `check`
  holds both sides' per-side log-probs of that run.
- `peak_mem_mb`, `trl_peak_mem_mb`: torch's peak allocated memory on a GPU; the process's peak resident set on a CPU.
- `flops_per_s`: our model FLOPs (one step's forward + backward, counted by torch's FlopCounterMode) over the steady
  step time; `matmul_peak_flops_per_s`: a large matmul's rate on this device in this dtype; `mfu` their ratio.
  `trl_flops_per_s` and `trl_mfu` count TRL's own step the same way (its reference forward and its second pass over
  image and prompt included: the work it does, not the work the step needs).
Target (CPU, tiny): speedup >= 2 with loss_abs_diff <= 1e-4 and peak memory not above TRL's. Targets at real sizes
are in docs/benchmarks.md.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vlpref.bench.layouts import LAYOUTS, Layout, save_layout
from vlpref.bench.measure import (
    DTYPES,
    device_name,
    matmul_peak_flops,
    offline_environment,
    peak_mb,
    pick_device,
    release,
    reset_peak,
    sync,
)

QUESTION = "describe the image in detail . what shape and what color is each object ?"


@dataclass(frozen=True)
class Setup:
    """What both sides train and how: shared by `bench dpo` and `bench train-all`."""

    layout: Layout = LAYOUTS["tiny"]
    finetune: str = "full"  # lora | full
    dtype: str = "float32"  # float32 | bfloat16
    batch: int = 4
    device: str = "cpu"
    lora_r: int = 64
    lora_alpha: float = 128.0

    @property
    def trains_vision(self) -> bool:  # the tiny bench's original setting (full fine-tuning) trains every weight
        return self.layout.name == "tiny" and self.finetune == "full"

    def describe(self, answer_words: int = 100) -> str:
        what = (f"LoRA r{self.lora_r} on the language model" if self.finetune == "lora"
                else "full fine-tuning" + (" (every weight)" if self.trains_vision else
                                           " (language model + projector)"))
        return (f"{self.layout.name} layout ({self.layout.source}; {self.layout.image_tokens} image tokens, "
                f"~{answer_words}-word answers), {self.dtype}, {what}")


# -- the shared model and data ----------------------------------------------------------------------------------
def build_inputs(root: Path, pairs: int, answer_words: int = 100, seed: int = 0, layout: Layout = LAYOUTS["tiny"],
                 device: str = "cpu", dtype: str = "float32", other: bool = True) -> dict:
    """`layout`'s model (and with `other` a second one, the loss check's reference), `pairs` preference pairs in
    vlpref's layout and the same pairs as a TRL dataset."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    from vlpref.data.schema import PreferencePair, Turn
    from vlpref.data.store import write_records
    from vlpref.models.tokenizer import BASE_WORDS

    began = time.perf_counter()
    models = {name: save_layout(layout, root / name, device, DTYPES[dtype], s)
              for name, s in (("policy", seed), ("other", seed + 1)) if name == "policy" or other}
    build_seconds = time.perf_counter() - began
    release(device)
    words = [w for w in BASE_WORDS if w.isalpha()]
    rng, pixels = random.Random(seed), np.random.RandomState(seed)
    (root / "pairs" / "images").mkdir(parents=True, exist_ok=True)
    records, rows = [], {"images": [], "prompt": [], "chosen": [], "rejected": []}
    size = layout.image_size
    for i in range(pairs):
        image = Image.fromarray(pixels.randint(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size),
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
    return {"policy": models["policy"], "other": models.get("other"), "pairs": root / "pairs",
            "trl_dataset": Dataset.from_dict(rows), "build_seconds": build_seconds}


def epoch_order(pairs: int, batch: int, seed: int = 0) -> list[int]:
    """Our trainer's example order over one epoch (`training.trainer.global_batch`): TRL is given its data in this
    order, so that step k of both sides trains on the same pairs."""
    from vlpref.training.trainer import global_batch

    steps = -(-pairs // batch)
    return [i for step in range(steps) for i in global_batch(step, pairs, batch, seed, steps)]


# -- TRL ---------------------------------------------------------------------------------------------------------
def run_trl(model_dir: Path, dataset, batch: int, steps: int, out: Path, ref_dir: Path | None = None,
            loss_type: str = "sigmoid", label_smoothing: float = 0.0, beta: float = 0.1,
            setup: Setup | None = None, count_flops: bool = False) -> dict:
    """TRL's DPOTrainer for `steps` steps on `dataset` in order (sequential sampler, so step 1's batch is
    dataset[0:batch]); its default reference unless `ref_dir`. Returns step times, peak memory, step-1 loss and
    logps, the tokens it scored in its first batch and, with `count_flops`, its FLOPs per step (one more step)."""
    from peft import LoraConfig
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from vlpref.models.vlm import load_processor
    from vlpref.training.params import lora_targets, part_of

    setup = setup or Setup(batch=batch)
    device, dtype = setup.device, DTYPES[setup.dtype]
    offline_environment()

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends, self.logs = [], {}

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.logs[state.global_step] = dict(logs)

    # from_pretrained, not an in-memory model: TRL rebuilds its default reference from config._name_or_path
    place = {"device_map": device} if device != "cpu" else {}
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, **place)
    ref = AutoModelForImageTextToText.from_pretrained(ref_dir, dtype=dtype, **place) if ref_dir else None
    peft_config = None
    if setup.finetune == "lora":  # the same modules as ours (`training.params.lora_targets`)
        peft_config = LoraConfig(r=setup.lora_r, lora_alpha=setup.lora_alpha, lora_dropout=0.0, bias="none",
                                 target_modules=lora_targets(model, "all-linear"))
    elif not setup.trains_vision:
        for name, p in model.named_parameters():
            p.requires_grad_(part_of(name) != "vision")
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                     max_steps=steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, beta=beta,
                     loss_type=[loss_type], label_smoothing=label_smoothing, max_length=2048,
                     bf16=setup.dtype == "bfloat16", fp16=False, use_cpu=device == "cpu",
                     activation_checkpointing=False, train_sampling_strategy="sequential", dataloader_num_workers=0,
                     logging_steps=1, save_strategy="no", report_to="none", seed=0, disable_tqdm=True)
    clock = Clock()
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=dataset, peft_config=peft_config,
                         # vlpref's loader: AutoProcessor asks for torchvision for Qwen-VL's video processor
                         processing_class=load_processor(str(model_dir)), callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # it prints every log row when tqdm is off
    reset_peak(device)
    sync(device)
    began = time.perf_counter()
    trainer.train()
    peak = peak_mb(device)
    intervals = [b - a for a, b in zip([began, *clock.ends], clock.ends, strict=False)]
    first = trainer.data_collator([trainer.train_dataset[i] for i in range(batch)])  # its step-1 batch
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(first["input_ids"], first["completion_mask"],
                                                           strict=True)]
    flops = None
    if count_flops:
        with FlopCounterMode(display=False) as counter:  # one more step's work, after the timed ones
            trainer.training_step(trainer.model, first)
        trainer.model.zero_grad(set_to_none=True)
        flops = counter.get_total_flops()
    step1 = clock.logs.get(1, {})
    return {"step_seconds": intervals, "peak_mem_mb": peak, "step1_loss": step1.get("loss"),
            "logps_chosen": step1.get("logps/chosen"), "logps_rejected": step1.get("logps/rejected"),
            "tokens": (rows[:batch], rows[batch:]), "flops_per_step": flops}


# -- ours --------------------------------------------------------------------------------------------------------
def train_config(setup: Setup, pairs: Path, model_dir: Path, steps: int, method: str = "dpo", **extra):
    """Our TrainConfig for `setup` (the same training as TRL's in `run_trl`); `extra` adds or overrides keys."""
    from vlpref.training.config import TrainConfig

    lora = {"lora": {"r": setup.lora_r, "alpha": setup.lora_alpha, "dropout": 0.0}} if setup.finetune == "lora" else {}
    preference = {"beta": 0.1} if method == "dpo" else {}
    return TrainConfig(method=method, data=str(pairs), model=str(model_dir), dtype=setup.dtype,
                       mixed_precision="bf16" if setup.dtype == "bfloat16" else "no",
                       device="cpu" if setup.device == "cpu" else "auto", finetune=setup.finetune,
                       freeze_vision=not setup.trains_vision, freeze_projector=setup.finetune == "lora", lr=1e-5,
                       schedule="constant", warmup_ratio=0.0, batch_size=setup.batch, grad_accum=1, max_steps=steps,
                       max_length=2048, seed=0, save_each_epoch=False, save_minutes=0,
                       **{**lora, **preference, **extra})


def timed_steps(trainer, steps: int, device: str) -> tuple[list[float], list]:
    """Run the trainer's optimizer steps (no checkpoint, no export: only the steps are timed); each step's seconds,
    step end to step end, and its StepResult."""
    seconds, results = [], []
    sync(device)
    last = time.perf_counter()
    for step in range(steps):
        results.append(trainer._step(step))  # reads the loss back: the device has finished the step
        sync(device)
        now = time.perf_counter()
        seconds.append(now - last)
        last = now
    return seconds, results


def run_ours(model_dir: Path, pairs: Path, batch: int, steps: int, out: Path, setup: Setup | None = None) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from vlpref.training.trainer import Trainer, global_batch

    setup = setup or Setup(batch=batch)
    reset_peak(setup.device)
    trainer = Trainer(train_config(setup, pairs, model_dir, steps), out, resume=False, log=lambda *a: None)
    seconds, results = timed_steps(trainer, steps, setup.device)  # the reference was precomputed above (timed)
    peak = peak_mb(setup.device)
    first = [trainer.examples[i] for i in global_batch(0, len(trainer.examples), trainer.batch, trainer.config.seed,
                                                       trainer.steps_per_epoch)]
    with FlopCounterMode(display=False) as counter:
        loss, _ = trainer.micro_loss(first, float(batch))
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return {"step_seconds": seconds, "reference_seconds": trainer.reference_seconds, "peak_mem_mb": peak,
            "flops_per_step": counter.get_total_flops(), "logps_chosen": results[0].metrics["logps/chosen"],
            "logps_rejected": results[0].metrics["logps/rejected"],
            "tokens": ([e.responses[0] for e in first], [e.responses[1] for e in first])}


def step1_sides_ours(model_dir: Path, ref_dir: Path, pairs: Path, batch: int, loss_type: str = "sigmoid",
                     label_smoothing: float = 0.0, beta: float = 0.1, order: list[int] | None = None) -> dict:
    """Our DPO loss and per-side log-probs (batch means) on the first `batch` pairs of `order` (default: file order,
    TRL's sequential step-1 batch) with the policy's initial weights and `ref_dir` as the reference: prefix-shared
    scoring, as training runs it."""
    from vlpref.models.vlm import VLM
    from vlpref.numerics.preference import PairLogps, dpo_loss
    from vlpref.training.data import load_examples
    from vlpref.training.forward import score_examples

    policy, ref = VLM.load(str(model_dir)), VLM.load(str(ref_dir))
    examples, _ = load_examples(pairs, policy, "pairs", max_length=2048)
    first = [examples[i] for i in (order or range(len(examples)))[:batch]]
    with torch.no_grad():
        mine, counts = score_examples(policy, first, pairs)
        theirs, _ = score_examples(ref, first, pairs)
    logps = PairLogps(mine[:, 0], mine[:, 1], theirs[:, 0], theirs[:, 1], counts[:, 0], counts[:, 1])
    return {"loss": dpo_loss(logps, beta, loss_type, label_smoothing).loss.item(),
            "logps_chosen": mine[:, 0].mean().item(), "logps_rejected": mine[:, 1].mean().item()}


def step1_loss_ours(model_dir: Path, ref_dir: Path, pairs: Path, batch: int, loss_type: str = "sigmoid",
                    label_smoothing: float = 0.0, beta: float = 0.1) -> float:
    """Our step-1 DPO loss on TRL's sequential step-1 batch (see `step1_sides_ours`)."""
    return step1_sides_ours(model_dir, ref_dir, pairs, batch, loss_type, label_smoothing, beta)["loss"]


def compare_step1(ours: dict, trl: dict) -> dict:
    """Both sides' step-1 per-side log-probs and the tokens each scored, pair by pair."""
    out = {"logps_chosen": ours["logps_chosen"], "trl_logps_chosen": trl["logps_chosen"],
           "logps_rejected": ours["logps_rejected"], "trl_logps_rejected": trl["logps_rejected"]}
    for side, k in (("chosen", 0), ("rejected", 1)):
        if trl[f"logps_{side}"] is not None:
            out[f"logps_{side}_abs_diff"] = abs(ours[f"logps_{side}"] - trl[f"logps_{side}"])
        out[f"tokens_{side}"] = [len(r) for r in ours["tokens"][k]]
        out[f"trl_tokens_{side}"] = [len(r) for r in trl["tokens"][k]]
    out["tokens_identical"] = ours["tokens"] == tuple(trl["tokens"])
    return out


def bench_dpo(batch: int = 4, steps: int = 20, threads: int | None = 2, work: Path | None = None,
              layout: str | Layout = "tiny", finetune: str | None = None, dtype: str = "float32",
              device: str | None = None, answer_words: int = 100) -> dict:
    """`finetune` None: full for the tiny layout (the bench's original setting), lora for a real one."""
    if steps < 2 or batch < 1:
        raise ValueError(f"bench dpo needs steps >= 2 (the first is not timed) and batch >= 1, not {steps}, {batch}")
    import tempfile

    import transformers
    import trl as trl_package

    device = pick_device(device)
    layout = LAYOUTS[layout] if isinstance(layout, str) else layout
    setup = Setup(layout, finetune or ("full" if layout.name == "tiny" else "lora"), dtype, batch, device)
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    loss_check = layout.name == "tiny"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work or tmp)
        inputs = build_inputs(root, pairs=batch * steps, answer_words=answer_words, layout=layout, device=device,
                              dtype=dtype, other=loss_check)
        order = epoch_order(batch * steps, batch)
        dataset = inputs["trl_dataset"].select(order)  # TRL's sequential reading = our trainer's order
        try:
            trl = run_trl(inputs["policy"], dataset, batch, steps, root / "trl", setup=setup, count_flops=True)
        except torch.OutOfMemoryError as error:  # TRL's peak is the higher one: still measure ours
            trl = {"error": f"out of memory: {str(error).splitlines()[0]}"}
        release(device)
        check = {}
        if loss_check:
            theirs = run_trl(inputs["policy"], dataset, batch, 1, root / "trl-check", inputs["other"], setup=setup)
            mine = step1_sides_ours(inputs["policy"], inputs["other"], inputs["pairs"], batch, order=order)
            check = {"loss": mine["loss"], "trl_loss": theirs["step1_loss"],
                     "loss_abs_diff": abs(mine["loss"] - theirs["step1_loss"]),
                     **{f"{k}_abs_diff": abs(mine[k] - theirs[k]) for k in ("logps_chosen", "logps_rejected")}}
            release(device)
        ours = run_ours(inputs["policy"], inputs["pairs"], batch, steps, root / "ours", setup)
    steady = statistics.median(ours["step_seconds"][1:])
    pairs_per_s = batch / steady
    peak = matmul_peak_flops(device, DTYPES[dtype])
    result = {
        "device": device_name(device), "model": setup.describe(answer_words), "layout": layout.name,
        "finetune": setup.finetune, "dtype": dtype, "batch_size": batch, "steps": steps,
        "build_seconds": inputs["build_seconds"], "pairs_per_s": pairs_per_s,
        "reference_seconds": ours["reference_seconds"], "peak_mem_mb": ours["peak_mem_mb"],
        "flops_per_s": ours["flops_per_step"] / steady, "matmul_peak_flops_per_s": peak,
        "mfu": ours["flops_per_step"] / steady / peak,
        "step_seconds": [round(s, 4) for s in ours["step_seconds"]],
    }
    if loss_check:
        result.update({k: check[k] for k in ("loss", "trl_loss", "loss_abs_diff")}, check=check)
    if "error" in trl:
        result["trl_error"] = trl["error"]
    else:
        trl_steady = statistics.median(trl["step_seconds"][1:])
        trl_pairs_per_s = batch / trl_steady

        def with_reference(epochs: int) -> float:  # our rate with the reference precompute spread over `epochs`
            return epochs * batch * steps / (ours["reference_seconds"] + epochs * steps * steady) / trl_pairs_per_s

        result.update({
            "trl_pairs_per_s": trl_pairs_per_s, "speedup": pairs_per_s / trl_pairs_per_s,
            "speedup_one_epoch": with_reference(1), "speedup_three_epochs": with_reference(3),
            "trl_peak_mem_mb": trl["peak_mem_mb"], "trl_flops_per_s": trl["flops_per_step"] / trl_steady,
            "trl_mfu": trl["flops_per_step"] / trl_steady / peak, "step1": compare_step1(ours, trl),
            "trl_step_seconds": [round(s, 4) for s in trl["step_seconds"]],
        })
    result["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                          "trl": trl_package.__version__}
    return result
