"""`vlpref train`: SFT (and its data variants, rejection sampling and SteerLM) and the DPO family, one loop.

    vlpref train --config recipes/seva/train_world.yaml --out runs/seva-train            # CPU, shapes world
    accelerate launch --num_processes 8 -m vlpref.cli train --config recipes/seva/train.yaml --out runs/seva
    torchrun --nproc_per_node 2 -m vlpref.cli train --config ... --out ...               # 2 CPU processes (gloo)

Why our own loop on accelerate and not transformers' Trainer (or TRL's DPOTrainer on top of it): the step *is* the
method here — responses continue from a shared image+prompt prefix, reference log-probs come from a cache, POVID
scores a second negative built online — and Trainer's `compute_loss` hook would hide most of the loop behind it
anyway. Exact resume needs the data order and RNG in our hands too. accelerate does what it is good at: processes,
DDP and mixed precision (configs/accelerate/ddp.yaml). `sharding: fsdp` shards parameters, gradients and optimizer
state with torch's FSDP2 instead of DDP (`training.sharding`; checkpoints gather the shards, so they stay whole).
DeepSpeed ZeRO is not supported: its engine steps inside `backward`, which this loop's accumulation would have to
follow, and it needs a GPU machine to validate.

The run, top to bottom:
1. load the model and the examples (truncation policy in `training.data`; dropped examples -> out/dropped.jsonl);
2. the DPO family's reference, chosen once (`training.reference`): with `reference: precomputed`, log-probs for every
   example from the cache or computed now, before any weight changes (so no reference model is kept in memory);
   online, the policy with its LoRA adapters disabled, or a frozen copy of the initial weights (full fine-tuning);
3. freeze / LoRA (`training.params`), AdamW, warmup + cosine schedule;
4. resume from the latest checkpoint in out/checkpoints if there is one (checked against the settings before the
   model loads; a finished run, out/summary.json, is not trained again);
5. steps: every optimizer step takes one *global batch* of batch_size × grad_accum × processes examples, in an order
   fixed by (seed, epoch); process r takes its contiguous share and splits it into grad_accum micro-batches. So 2
   processes see exactly the examples 1 process sees with the same global batch. The last batch of an epoch is
   filled up with examples from the start of that epoch's order (accelerate's `even_batches` does the same);
6. log (console, out/log.jsonl, optional TensorBoard / W&B); checkpoint every `save_minutes` (10 by default), at
   the end of each epoch, every `save_every` steps if set, and on SIGINT / SIGTERM, which then end the run with
   status 130 / 143 (`training.stopping`); at the end plot out/log.png and export out/model (a standard HF model
   folder, LoRA merged) plus out/adapter for LoRA runs.

Loss normalisation, so that any split into processes and micro-batches gives the same gradient: DPO losses are
summed and divided by the global batch size; SFT's NLL is summed over tokens and divided by the global batch's token
count (a token-level mean over the global batch, as HF's `num_items_in_batch`; `numerics.sft`). DDP averages
gradients over processes, so each process multiplies its part by the process count.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlpref.errors import ConfigError, VlprefError
from vlpref.models.fingerprint import model_fingerprint
from vlpref.models.names import resolve_model
from vlpref.models.vlm import VLM
from vlpref.numerics.sft import sft_loss
from vlpref.training import checkpoint, sharding, stopping
from vlpref.training.config import TrainConfig
from vlpref.training.data import Example, load_examples
from vlpref.training.forward import score_examples
from vlpref.training.objectives import OBJECTIVES, negative_image, objective_loss, score_terms
from vlpref.training.params import param_groups, setup_trainable
from vlpref.training.plot import plot_log
from vlpref.training.reference import AdaptersDisabled, FrozenCopy, Precomputed, Reference, ReferenceCache
from vlpref.training.runfolder import TrainResult, finished, logged_loss, read_summary, settings_hash, settings_of

if TYPE_CHECKING:  # imported when a Trainer is made, not with this module (the CLI imports it to start faster)
    from accelerate import Accelerator

# peft asks transformers a deprecated question on every LoRA wrap; the answer is right, the warning is noise
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

# report_to's trackers and the packages accelerate can use for each (without one it would only warn, and log nothing)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


@dataclass
class StepResult:
    loss: float  # the global batch's loss, reduced over processes
    lr: float  # the rate this step used
    grad_norm: float | None  # before clipping; None without max_grad_norm
    metrics: dict[str, float]  # batch means over the global batch (the DPO family's rewards/…, logps/…); SFT: none


def global_batch(step: int, n: int, size: int, seed: int, steps_per_epoch: int) -> list[int]:
    """Example indices of optimizer step `step` (0-based): the epoch's seeded permutation, `size` at a time, the
    last batch filled up from the start of the same permutation."""
    epoch, position = divmod(step, steps_per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    while len(order) < steps_per_epoch * size:  # fill the last batch (n < size: the order repeats more than once)
        order += order[: steps_per_epoch * size - len(order)]
    return order[position * size : (position + 1) * size]


def make_accelerator(config: TrainConfig, out: Path) -> Accelerator:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    for name in config.report_to:
        if not any(importlib.util.find_spec(module) for module in TRACKERS[name]):
            raise ConfigError(f"report_to: {name} needs the {TRACKERS[name][0]} package, which is not installed "
                              f"(pip install {TRACKERS[name][0]}, or remove {name} from report_to)")
    # broadcast_buffers=False: DDP would otherwise broadcast buffers (rotary tables, position ids: constants)
    # before every forward after a backward, and processes whose micro-batches need different numbers of
    # forward passes (image-contrast pairs are scored apart) would pair those broadcasts with the gradient
    # all-reduce and hang.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    # accelerate keeps one process-wide state and refuses a second Accelerator with other precision settings;
    # runs made one after another in a process (the demo, a sweep, tests) each get their own. The process
    # group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=config.mixed_precision, cpu=config.device == "cpu",
                       log_with=config.report_to or None, project_dir=str(out), kwargs_handlers=[ddp])


class Trainer:
    """One run. Everything is built here, once and in order: the model and examples, the reference, what trains,
    the optimizer and schedule; `run()` then trains (resuming from out/checkpoints if it can).

        >>> trainer = Trainer(config, "runs/x")    # loads; precomputes the reference log-probs if asked
        >>> result = trainer.run()
    """

    config: TrainConfig
    out: Path
    resume: bool
    resume_from: Path | None  # the checkpoint run() continues from, checked against the settings
    accelerator: Accelerator
    rank: int
    world: int  # processes
    main: bool  # the main process writes the run folder's files and logs
    log: Callable[..., None]
    root: Path  # the dataset folder
    sharded: bool  # FSDP over more than one process
    model_path: str  # `config.model`, resolved (a world model's folder)
    vlm: VLM  # the loaded model; `trainable` wraps vlm.model (peft, for LoRA)
    examples: list[Example]
    reference: Reference | None  # None for the SFT methods: their NLL has no reference
    reference_seconds: float  # spent making the reference (the precompute, or the frozen copy)
    trainable: nn.Module  # the model to train, unwrapped (names without DDP's "module.")
    model: nn.Module  # what a step calls: `trainable` prepared by accelerate (DDP), or sharded in place (FSDP)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch: int  # examples per optimizer step, all processes together (the global batch)
    steps_per_epoch: int
    total: int  # optimizer steps of the run

    def __init__(self, config: TrainConfig, out: str | Path, resume: bool = True, log=print):
        c = self.config = config
        self.out, self.resume = Path(out), resume
        self.accelerator = make_accelerator(c, self.out)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        self.log = log if self.main else (lambda *a, **k: None)
        self.root = Path(c.data)
        self.sharded = c.sharding == "fsdp" and self.world > 1
        self.resume_from = self._resume_point()  # before anything loads or out/config.json is written

        torch.manual_seed(c.seed)
        self.model_path = resolve_model(c.model)
        self.vlm = VLM.load(self.model_path, dtype=c.dtype, device=str(self.accelerator.device), revision=c.revision)
        self.examples = self._load_examples()
        began = time.perf_counter()
        # before any weight changes: the precompute scores the initial weights, the frozen copy copies them
        self.reference = self._make_reference()
        self.reference_seconds = time.perf_counter() - began
        self.trainable = self._make_trainable()
        optimizer = torch.optim.AdamW(param_groups(self.trainable, c.lr, c.projector_lr, c.weight_decay), lr=c.lr,
                                      betas=c.adam_betas)
        self.batch = c.batch_size * c.grad_accum * self.world
        self.steps_per_epoch = math.ceil(len(self.examples) / self.batch)
        self.total = c.max_steps or self.steps_per_epoch * c.epochs  # max_steps overrides epochs, as in HF
        from transformers import get_scheduler

        name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[c.schedule]
        self.scheduler = get_scheduler(name, optimizer, num_warmup_steps=math.ceil(c.warmup_ratio * self.total),
                                       num_training_steps=self.total)
        # The scheduler is not prepared: accelerate would step it once per process. A sharded model is not
        # prepared either: FSDP already synchronises its gradients (accelerate would wrap it in DDP as well).
        if self.sharded:
            self.model, self.optimizer = self.trainable, optimizer
        else:
            self.model, self.optimizer = self.accelerator.prepare(self.trainable, optimizer)
        n_train = sum(p.numel() for p in self.trainable.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in self.trainable.parameters())
        self.log(f"{c.method} on {c.model}: {n_train:,} of {n_all:,} parameters train ({c.finetune}); "
                 f"{self.total} step(s) of {self.batch} example(s), {self.world} process(es)")

    # -- setup, in the order __init__ calls it -----------------------------------------------------------------
    def _resume_point(self) -> Path | None:
        """The latest checkpoint, if this run resumes from it; an error saying why it cannot if its settings or
        process count differ. When a rerun starts over, it says why."""
        found = checkpoint.checkpoints(self.out)
        if not self.resume:
            if found:
                self.log(f"not resuming (--no-resume): the {len(found)} checkpoint(s) in {self.out / 'checkpoints'} "
                         "are removed; training from step 1")
            return None
        if not found:
            if (self.out / "log.jsonl").is_file() and (self.out / "log.jsonl").stat().st_size:
                self.log(f"no checkpoint in {self.out / 'checkpoints'} (the previous run here stopped before its "
                         "first one): training from step 1")
            return None
        checkpoint.check(found[-1], settings_hash(self.config), settings_of(self.config), self.world)
        return found[-1]

    def _load_examples(self) -> list[Example]:
        """The examples (truncation policy in `training.data`), checked against the model and the objective; writes
        out/config.json and out/dropped.jsonl."""
        c = self.config
        kind = "pairs" if c.method == "dpo" else "sft"
        examples, dropped = load_examples(self.root, self.vlm, kind, c.max_length, c.truncation)
        self._preflight(examples[0])
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(c.model_dump_json(indent=2))
            with (self.out / "dropped.jsonl").open("w") as f:
                f.writelines(json.dumps(d) + "\n" for d in dropped)
        self.log(f"{len(examples)} example(s) from {self.root}"
                 + (f"; {len(dropped)} dropped by the truncation policy (out/dropped.jsonl)" if dropped else ""))
        contrast = sum(e.rejected_images is not None for e in examples)
        if contrast and c.objective != "dpo":
            raise VlprefError(f"objective {c.objective} builds its extra negative from the chosen side's image; "
                              f"{contrast} pair(s) in {self.root} have their own rejected images")
        if contrast and c.prefix_sharing:
            self.log(f"{contrast} pair(s) have their own rejected images: scored without prefix sharing")
        return examples

    def _preflight(self, example: Example) -> None:
        """One example through the model before anything is computed or written, so that a processor that does not
        fit the model (another checkpoint's image size or token count) fails here, saying so."""
        try:
            with torch.no_grad():
                score_examples(self.vlm, [example], self.root, self.config.prefix_sharing)
        except (ValueError, RuntimeError, IndexError) as error:
            raise VlprefError(f"{self.model_path}: the processor's inputs do not fit the model "
                              f"({type(error).__name__}: {error}); are the processor files from the same checkpoint "
                              "as the weights?") from None

    def _make_reference(self) -> Reference | None:
        """The DPO family's reference, chosen once: cached log-probs, the policy with its adapters off, or a frozen
        copy of the initial weights (reference.py describes the three)."""
        c = self.config
        if c.method != "dpo":
            return None
        if c.reference == "precomputed":
            return self._precompute()
        if c.finetune == "lora":
            return AdaptersDisabled(self._reference_terms, self._autocast)
        frozen = copy.deepcopy(self.vlm.model).eval().requires_grad_(False)
        return FrozenCopy(frozen, self._reference_terms, self.accelerator.autocast)

    def _precompute(self) -> Precomputed:
        """Reference log-probs of every example, from the cache or computed now (each process its share)."""
        c = self.config
        terms = OBJECTIVES[c.objective].terms
        cache_path = Path(c.reference_cache) if c.reference_cache else self.out / "reference.sqlite"
        aug = negative_image(c)
        scored = [c.objective, aug.model_dump() if aug else None, c.mixed_precision]
        cache = ReferenceCache(cache_path, model_fingerprint(self.model_path, c.revision, c.dtype), scored)

        def score(batch: list[Example]) -> torch.Tensor:  # (b, terms)
            # under the policy's autocast, so that at step 0 the policy's and the reference's numbers agree
            with self.accelerator.autocast():
                found = self._reference_terms(batch, self.vlm.model)
            return torch.stack([found[t] for t in terms], dim=1).float().cpu()

        cache.compute(self.vlm, self.examples, self.root, score, c.batch_size, shard=(self.rank, self.world),
                      log=self.log)
        self.accelerator.wait_for_everyone()
        rows = {id(e): i for i, e in enumerate(self.examples)}
        return Precomputed(cache.get(self.root, self.examples), rows, terms, self.accelerator.device)

    def _make_trainable(self) -> nn.Module:
        """Freeze / LoRA (`training.params`), gradient checkpointing, and FSDP's sharding, on vlm.model in place."""
        c = self.config
        model = setup_trainable(self.vlm.model, c)
        if c.gradient_checkpointing:
            # non-reentrant: recomputes only what backward needs and works with inputs that need no gradient
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        if c.sharding == "fsdp" and not self.sharded:
            self.log("sharding: fsdp with one process: nothing to shard, training unsharded")
        if self.sharded:  # in place, before the optimizer is made (fully_shard replaces the parameters by DTensors)
            sharding.shard(model, list(getattr(self.vlm.model, "_no_split_modules", None) or []))
        return model

    # -- scoring -------------------------------------------------------------------------------------------------
    def _autocast(self) -> AbstractContextManager:
        """What the policy's forward runs under: a prepared model autocasts by itself; a sharded one (not prepared)
        is put under accelerate's autocast here."""
        return self.accelerator.autocast() if self.sharded else nullcontext()

    def _reference_terms(self, batch: list[Example], model: nn.Module) -> dict[str, torch.Tensor]:
        """The objective's summed log-probs of `batch` under `model`, {term: (b,)}: a reference's `Score`."""
        terms, _ = score_terms(self.vlm, batch, self.root, self.config, self.config.prefix_sharing, model=model)
        return terms

    def _normaliser(self, indices: list[int]) -> float:
        """What the global batch's summed loss is divided by: its pairs (the DPO family's mean per pair), or its
        response tokens (SFT's mean per token, `numerics.sft`)."""
        if self.config.method == "dpo":
            return float(len(indices))
        return float(sum(len(self.examples[i].responses[0]) for i in indices))

    def micro_loss(self, batch: list[Example], normaliser: float) -> tuple[torch.Tensor, dict[str, float]]:
        """This micro-batch's part of the global batch's loss, and its metrics (sums over pairs). Each process's
        part is multiplied by the process count, as DDP (and FSDP) average gradients over processes."""
        c = self.config
        if c.method != "dpo":  # SFT, rs, steerlm: NLL over the target's tokens
            with self._autocast():
                sums, _ = score_examples(self.vlm, batch, self.root, c.prefix_sharing, model=self.model)  # (b, 1)
            return sft_loss(sums[:, 0], normaliser) * self.world, {}
        with self._autocast():
            terms, counts = score_terms(self.vlm, batch, self.root, c, c.prefix_sharing, model=self.model)
        ref = self.reference.log_probs(batch, self.model)
        out, found = objective_loss(c, terms, ref, counts)
        found = {k: v * len(batch) for k, v in found.items()}  # sums, averaged over the global batch at log time
        return out.losses.sum() * self.world / normaliser, found

    # -- the loop ------------------------------------------------------------------------------------------------
    def _step(self, step: int) -> StepResult:
        """Optimizer step `step` (0-based): its global batch, this process's share in grad_accum micro-batches
        (gradients synchronised once, after the last), clipping, the update."""
        c, acc = self.config, self.accelerator
        indices = global_batch(step, len(self.examples), self.batch, c.seed, self.steps_per_epoch)
        share = c.batch_size * c.grad_accum
        mine = indices[self.rank * share : (self.rank + 1) * share]
        normaliser = self._normaliser(indices)
        totals: dict[str, float] = {}
        step_loss = torch.zeros((), device=acc.device)
        for micro in range(c.grad_accum):
            part = mine[micro * c.batch_size : (micro + 1) * c.batch_size]
            last = micro == c.grad_accum - 1
            if self.sharded:  # FSDP reduce-scatters once, after the last micro-batch's backward
                self.model.set_requires_gradient_sync(last)
            with nullcontext() if last or self.sharded else acc.no_sync(self.model):
                loss_part, values = self.micro_loss([self.examples[i] for i in part], normaliser)
                acc.backward(loss_part)
            step_loss += loss_part.detach()
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + v
        if self.sharded:
            sharding.release(self.model)
        grad_norm = self._clip() if c.max_grad_norm is not None else None
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        # the global batch's loss: each process holds its share × world, so the mean over processes is the sum
        loss = float(acc.reduce(step_loss, reduction="mean"))
        metrics = {}
        if totals:  # a collective: every process has the same keys (the SFT methods report none)
            sums = acc.reduce(torch.tensor(list(totals.values()), device=acc.device), reduction="sum")
            metrics = {k: v / len(indices) for k, v in zip(totals, sums.tolist(), strict=True)}
        return StepResult(loss, lr, grad_norm, metrics)

    def _clip(self) -> float:
        """Clip the gradients to max_grad_norm; their norm before clipping, over every process's part."""
        if not self.sharded:
            return float(self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm))
        from torch.distributed.tensor import DTensor

        # the norm over every shard (DTensor collectives)
        norm = torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                              self.config.max_grad_norm)
        return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)

    def _save(self, step: int) -> None:
        checkpoint.save(self.out, step, self.trainable, self.optimizer, self.scheduler, settings_hash(self.config),
                        self.rank, self.world, self.accelerator.wait_for_everyone, self.config.keep_checkpoints,
                        settings_of(self.config))

    def _save_due(self, step: int, since_save: float, signals: stopping.Signals) -> tuple[int | None, bool]:
        """After step `step` (1-based): checkpoint if one is due; (the signal to stop on, if any, whether it saved),
        the same on every process. A time-based checkpoint changes when state is written, never what is computed."""
        c = self.config
        signum, due = stopping.agree(signals.received, c.save_minutes > 0 and since_save >= c.save_minutes * 60,
                                     self.world, self.accelerator.device, self.accelerator.reduce)
        scheduled = (c.save_every and step % c.save_every == 0) or (c.save_each_epoch and
                                                                    step % self.steps_per_epoch == 0)
        save = signum is not None or bool((scheduled or due) and step < self.total)  # the end saves after the loop
        if save:
            self._save(step)
        return signum, save

    def _begin(self) -> int:
        """The step to start at: the checkpoint's, restored, or 0, with what an earlier run here left removed (its
        checkpoints, its summary); log.jsonl keeps the rows up to the start (a killed run may have logged more)."""
        start = 0
        if self.resume_from is not None:
            start = checkpoint.load(self.resume_from, self.trainable, self.optimizer, self.scheduler,
                                    settings_hash(self.config), self.rank, self.world, settings_of(self.config))
            self.log(f"resumed from {self.resume_from} (step {start})")
        log_file = self.out / "log.jsonl"
        if self.main and start < self.total:
            if not start:
                shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
            (self.out / "summary.json").unlink(missing_ok=True)  # its presence would say this run finished
            rows = log_file.read_text().splitlines() if start and log_file.is_file() else []
            log_file.write_text("".join(r + "\n" for r in rows if json.loads(r)["step"] <= start))
        return start

    def _log_row(self, step: int, done: StepResult, seconds: float) -> None:
        c = self.config
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 4), "loss": done.loss, "lr": done.lr,
               "grad_norm": done.grad_norm, "seconds": round(seconds, 4), **done.metrics}
        if self.main:
            with (self.out / "log.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
        if c.report_to:
            self.accelerator.log({k: v for k, v in row.items() if isinstance(v, float)}, step=step)
        if step % c.log_every == 0 or step == self.total:
            extra = "".join(f" {k.split('/')[-1]} {row[k]:.3f}" for k in ("rewards/margins", "rewards/accuracies")
                            if k in row)
            self.log(f"step {step}/{self.total} loss {done.loss:.4f} lr {done.lr:.2e}{extra}")

    def run(self) -> TrainResult:
        c, acc = self.config, self.accelerator
        start = self._begin()
        if start >= self.total and (result := read_summary(self.out)) is not None:
            self.log(f"{self.out} holds this run, finished: nothing to train")
            return result
        if c.report_to:
            acc.init_trackers("vlpref", config=json.loads(c.model_dump_json()))
        loss = logged_loss(self.out, start) if start >= self.total else float("nan")
        last_row = last_save = time.perf_counter()
        # Signals are only recorded during the steps; the loop stops at the step's end (`training.stopping`)
        with stopping.Signals(say=self.main) as signals:
            for step in range(start, self.total):
                done = self._step(step)
                loss = done.loss
                # seconds since the previous row: this step plus the previous step's logging and checkpoint
                self._log_row(step + 1, done, time.perf_counter() - last_row)
                last_row = time.perf_counter()
                signum, saved = self._save_due(step + 1, last_row - last_save, signals)
                last_save = time.perf_counter() if saved else last_save
                if signum is not None:
                    if self.main:
                        plot_log(self.out / "log.jsonl", self.out / "log.png")
                    self.log(f"interrupted at step {step + 1}; run the same command to resume")
                    if c.report_to:
                        acc.end_training()
                    raise stopping.Interrupted(signum, step + 1)
        if self.total > start:
            self._save(self.total)
        if self.main:
            plot_log(self.out / "log.jsonl", self.out / "log.png")
        self.export()
        if self.main:  # written last: its presence means the run, export included, finished
            (self.out / "summary.json").write_text(json.dumps(
                {"steps": self.total, "final_loss": loss if math.isfinite(loss) else None}, allow_nan=False))
        if c.report_to:
            acc.end_training()
        return TrainResult(self.total, loss, self.out)

    def export(self) -> None:
        """out/model: a standard HF model folder (LoRA merged), loadable by VLM.load / from_pretrained;
        out/adapter: the LoRA adapter alone (peft layout) for LoRA runs."""
        self.accelerator.wait_for_everyone()
        weights = sharding.full_trainable(self.trainable) if self.sharded else None  # a collective: all processes
        if not self.main:
            return
        model = self.trainable
        if self.sharded:  # rebuilt whole on the CPU, with the gathered trained weights
            base = VLM.load(self.model_path, dtype=self.config.dtype, revision=self.config.revision)
            model = setup_trainable(base.model, self.config)
            sharding.load_trainable(model, weights)
        if self.config.finetune == "lora":
            model.save_pretrained(self.out / "adapter")
            full = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                    if p.requires_grad and "lora_" not in n}
            if full:  # a projector or vision tower trained in full is not part of a peft adapter
                from safetensors.torch import save_file

                save_file(full, self.out / "adapter" / "trained_in_full.safetensors")
            if not self.config.merge_lora:
                return
            # Merged on the CPU: training is over, and a copy on the GPU would double the model's memory there at
            # the very end of a run (+26 GB for a 13B model in bf16). The trained model stays intact (and on CPU).
            model = copy.deepcopy(model.cpu()).merge_and_unload()
        model.save_pretrained(self.out / "model")
        self.vlm.processor.save_pretrained(self.out / "model")
        self.log(f"model written to {self.out / 'model'}")


def train(config: TrainConfig, out: str | Path, resume: bool = True, log=print) -> TrainResult:
    """Train into `out`, resuming there; a run finished there with the same settings is returned as it is."""
    if resume and (done := finished(config, Path(out), log)) is not None:
        return done
    return Trainer(config, out, resume, log).run()
