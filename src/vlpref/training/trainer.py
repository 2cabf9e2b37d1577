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
2. DPO with `reference: precomputed`: reference log-probs for every example, from the cache or computed now, before
   any weight changes (so no reference model is kept in memory);
3. freeze / LoRA (`training.params`), AdamW, warmup + cosine schedule;
4. resume from the latest checkpoint in out/checkpoints if there is one;
5. steps: every optimizer step takes one *global batch* of batch_size × grad_accum × processes examples, in an order
   fixed by (seed, epoch); process r takes its contiguous share and splits it into grad_accum micro-batches. So 2
   processes see exactly the examples 1 process sees with the same global batch. The last batch of an epoch is
   filled up with examples from the start of that epoch's order (accelerate's `even_batches` does the same);
6. log (console, out/log.jsonl, optional TensorBoard / W&B), checkpoint, and export out/model (a standard HF model
   folder, LoRA merged) plus out/adapter for LoRA runs.

Loss normalisation, so that any split into processes and micro-batches gives the same gradient: DPO losses are
summed and divided by the global batch size; SFT's NLL is summed over tokens and divided by the global batch's token
count (a token-level mean over the global batch, as HF's `num_items_in_batch`). DDP averages gradients over
processes, so each process multiplies its part by the process count.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from vlpref.errors import VlprefError
from vlpref.models.fingerprint import model_fingerprint
from vlpref.models.vlm import VLM
from vlpref.training import checkpoint, sharding
from vlpref.training.config import TrainConfig
from vlpref.training.data import Example, load_examples
from vlpref.training.forward import allow_checkpointing, score_examples
from vlpref.training.objectives import TERMS, negative_image, objective_loss, score_terms
from vlpref.training.params import param_groups, setup_trainable
from vlpref.training.reference import ReferenceCache
from vlpref.world.models import WORLD_PREFIX, model_path, world_model_names

# peft asks transformers a deprecated question on every LoRA wrap; the answer is right, the warning is noise
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

# Settings that do not change what is computed: a resumed run may change them.
NOT_HASHED = {"recipe", "save_every", "keep_checkpoints", "log_every", "report_to", "reference_cache"}


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    out: Path


def settings_hash(config: TrainConfig) -> str:
    kept = {k: v for k, v in config.model_dump().items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def global_batch(step: int, n: int, size: int, seed: int, steps_per_epoch: int) -> list[int]:
    """Example indices of optimizer step `step` (0-based): the epoch's seeded permutation, `size` at a time, the
    last batch filled up from the start of the same permutation."""
    epoch, position = divmod(step, steps_per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    while len(order) < steps_per_epoch * size:  # fill the last batch (n < size: the order repeats more than once)
        order += order[: steps_per_epoch * size - len(order)]
    return order[position * size : (position + 1) * size]


class Trainer:
    def __init__(self, config: TrainConfig, out: str | Path, resume: bool = True, log=print):
        from accelerate import Accelerator

        self.config, self.out, self.resume = config, Path(out), resume
        from accelerate.utils import DistributedDataParallelKwargs

        # broadcast_buffers=False: DDP would otherwise broadcast buffers (rotary tables, position ids: constants)
        # before every forward after a backward, and processes whose micro-batches need different numbers of
        # forward passes (image-contrast pairs are scored apart) would pair those broadcasts with the gradient
        # all-reduce and hang.
        ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
        # accelerate keeps one process-wide state and refuses a second Accelerator with other precision settings;
        # runs made one after another in a process (the demo, a sweep, tests) each get their own. The process
        # group (PartialState) is kept.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.device == "cpu",
                                       log_with=config.report_to or None, project_dir=str(self.out),
                                       kwargs_handlers=[ddp])
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        self.log = log if self.main else (lambda *a, **k: None)
        self.root = Path(config.data)

    # -- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        path = resolve_model(c.model)
        self.vlm = VLM.load(path, dtype=c.dtype, device=str(self.accelerator.device), revision=c.revision)
        kind = "pairs" if c.method == "dpo" else "sft"
        self.examples, dropped = load_examples(self.root, self.vlm, kind, c.max_length, c.truncation)
        self.preflight(path)
        self.row = {id(e): i for i, e in enumerate(self.examples)}  # the trainer's own objects: identity is safe
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(c.model_dump_json(indent=2))
            with (self.out / "dropped.jsonl").open("w") as f:
                f.writelines(json.dumps(d) + "\n" for d in dropped)
        self.log(f"{len(self.examples)} example(s) from {self.root}"
                 + (f"; {len(dropped)} dropped by the truncation policy (out/dropped.jsonl)" if dropped else ""))
        contrast = sum(e.rejected_images is not None for e in self.examples)
        if contrast and c.objective != "dpo":
            raise VlprefError(f"objective {c.objective} builds its extra negative from the chosen side's image; "
                              f"{contrast} pair(s) in {self.root} have their own rejected images")
        self.prefix_sharing = c.prefix_sharing
        if contrast and self.prefix_sharing:
            self.log(f"{contrast} pair(s) have their own rejected images: scored without prefix sharing")

        self.reference = None  # (N, terms) precomputed reference log-probs, row i = self.examples[i]
        self.copy = None
        self.reference_seconds = 0.0
        if c.method == "dpo" and c.reference == "precomputed":
            cache_path = Path(c.reference_cache) if c.reference_cache else self.out / "reference.sqlite"
            aug = negative_image(c)
            scored = [c.objective, aug.model_dump() if aug else None, c.mixed_precision]
            cache = ReferenceCache(cache_path, model_fingerprint(path, c.revision, c.dtype), scored)

            def score(batch: list[Example]) -> torch.Tensor:
                # under the policy's autocast, so that at step 0 the policy's and the reference's numbers agree
                with self.accelerator.autocast():
                    terms, _ = score_terms(self.vlm, batch, self.root, c, self.prefix_sharing)
                return torch.stack([terms[t] for t in TERMS[c.objective]], dim=1).float().cpu()

            began = time.perf_counter()
            cache.compute(self.vlm, self.examples, self.root, score, c.batch_size, shard=(self.rank, self.world),
                          log=self.log)
            self.accelerator.wait_for_everyone()
            # read once into memory: a cache key hashes the example's image bytes, too slow to redo every step
            self.reference = cache.get(self.root, self.examples)
            self.reference_seconds = time.perf_counter() - began
        elif c.method == "dpo" and c.finetune == "full":  # online reference for full fine-tuning: a frozen copy
            import copy

            self.copy = copy.deepcopy(self.vlm.model).eval().requires_grad_(False)

        model = setup_trainable(self.vlm.model, c)
        if c.gradient_checkpointing:
            # non-reentrant: the only kind under which a tensor made inside a checkpointed layer (the prefix's
            # keys and values) can carry gradient to a later pass (the continuation)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            allow_checkpointing(model)
        model.train()
        # FSDP: shard in place before the optimizer is made (fully_shard replaces the parameters with DTensors)
        self.sharded = c.sharding == "fsdp" and self.world > 1
        if c.sharding == "fsdp" and not self.sharded:
            self.log("sharding: fsdp with one process: nothing to shard, training unsharded")
        if self.sharded:
            sharding.shard(model, list(getattr(self.vlm.model, "_no_split_modules", None) or []))
        self.trainable = model  # unwrapped (names without DDP's "module.")
        self.model_path = path
        optimizer = torch.optim.AdamW(param_groups(model, c.lr, c.projector_lr, c.weight_decay), lr=c.lr,
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
            self.model, self.optimizer = model, optimizer
        else:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        n_train = sum(p.numel() for p in self.trainable.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in self.trainable.parameters())
        self.log(f"{c.method} on {c.model}: {n_train:,} of {n_all:,} parameters train ({c.finetune}); "
                 f"{self.total} step(s) of {self.batch} example(s), {self.world} process(es)")

    def preflight(self, path: str) -> None:
        """One example through the model before anything is computed or written, so that a processor that does not
        fit the model (another checkpoint's image size or token count) fails here, saying so."""
        try:
            with torch.no_grad():
                score_examples(self.vlm, self.examples[:1], self.root, self.config.prefix_sharing)
        except (ValueError, RuntimeError, IndexError) as error:
            raise VlprefError(f"{path}: the processor's inputs do not fit the model ({type(error).__name__}: "
                              f"{error}); are the processor files from the same checkpoint as the weights?") from None

    # -- one micro-batch --------------------------------------------------------------------------------------
    def micro_loss(self, batch: list[Example], normaliser: float) -> tuple[torch.Tensor, dict]:
        """This micro-batch's part of the global batch's loss (already scaled), and its metrics (sums over pairs)."""
        c = self.config
        # a prepared model runs under accelerate's autocast by itself; a sharded one (not prepared) is put under it
        autocast = self.accelerator.autocast() if self.sharded else nullcontext()
        if c.method != "dpo":  # NLL summed over tokens; normaliser = the global batch's token count
            with autocast:
                sums, counts = score_examples(self.vlm, batch, self.root, self.prefix_sharing, model=self.model)
            nll = -sums[:, 0].sum()
            return nll * self.world / normaliser, {"nll_sum": nll.item(), "tokens": counts.sum().item()}
        with autocast:
            terms, counts = score_terms(self.vlm, batch, self.root, c, self.prefix_sharing, model=self.model)
        if self.reference is not None:
            cached = self.reference[[self.row[id(e)] for e in batch]].to(counts.device)
            ref = {t: cached[:, i] for i, t in enumerate(TERMS[c.objective])}
        else:
            with torch.no_grad():
                if self.copy is not None:  # not prepared by accelerate, so autocast it here like the policy
                    with self.accelerator.autocast():
                        ref, _ = score_terms(self.vlm, batch, self.root, c, self.prefix_sharing, model=self.copy)
                else:
                    with self.accelerator.unwrap_model(self.model).disable_adapter(), \
                            self.accelerator.autocast() if self.sharded else nullcontext():
                        ref, _ = score_terms(self.vlm, batch, self.root, c, self.prefix_sharing, model=self.model)
        out, found = objective_loss(c, terms, ref, counts)
        found = {k: v * len(batch) for k, v in found.items()}  # sums, averaged over the global batch at log time
        return out.losses.sum() * self.world / normaliser, found

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        c, acc = self.config, self.accelerator
        if not hasattr(self, "vlm"):
            self.setup()
        start = 0
        found = checkpoint.checkpoints(self.out)
        if found and self.resume:
            start = checkpoint.load(found[-1], self.trainable, self.optimizer, self.scheduler,
                                    settings_hash(c), self.rank, self.world)
            self.log(f"resumed from {found[-1]} (step {start})")
        if c.report_to:
            acc.init_trackers("vlpref", config=json.loads(c.model_dump_json()))
        log_file = self.out / "log.jsonl"
        if self.main:  # keep the rows up to the checkpoint; a killed run may have logged steps after it
            rows = log_file.read_text().splitlines() if start and log_file.is_file() else []
            log_file.write_text("".join(r + "\n" for r in rows if json.loads(r)["step"] <= start))
        loss = float("nan")
        last_row = time.perf_counter()
        for step in range(start, self.total):
            indices = global_batch(step, len(self.examples), self.batch, c.seed, self.steps_per_epoch)
            mine = indices[self.rank * c.batch_size * c.grad_accum : (self.rank + 1) * c.batch_size * c.grad_accum]
            if c.method == "dpo":
                normaliser = float(len(indices))
            else:
                normaliser = float(sum(len(self.examples[i].responses[0]) for i in indices))
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
            grad_norm = None
            if self.sharded:
                sharding.release(self.model)
            if c.max_grad_norm is not None and self.sharded:  # the norm over every shard (DTensor collectives)
                norm = torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.grad is not None], c.max_grad_norm)
                grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
            elif c.max_grad_norm is not None:
                grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm))
            lr = self.scheduler.get_last_lr()[0]  # the rate this step used
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            # the global batch's loss: each process holds its share × world, so the mean over processes is the sum
            loss = float(acc.reduce(step_loss, reduction="mean"))
            row = {"step": step + 1, "epoch": round((step + 1) / self.steps_per_epoch, 4), "loss": loss,
                   "lr": lr, "grad_norm": grad_norm,
                   # since the previous row: this step plus the previous step's logging and checkpoint
                   "seconds": round(time.perf_counter() - last_row, 4)}
            last_row = time.perf_counter()
            if c.method == "dpo":
                sums = acc.reduce(torch.tensor(list(totals.values()), device=acc.device), reduction="sum")
                row |= {k: v / len(indices) for k, v in zip(totals, sums.tolist(), strict=True)}
            if self.main:
                with log_file.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            if c.report_to:
                acc.log({k: v for k, v in row.items() if isinstance(v, float)}, step=step + 1)
            if (step + 1) % c.log_every == 0 or step + 1 == self.total:
                extra = "".join(f" {k.split('/')[-1]} {row[k]:.3f}" for k in ("rewards/margins", "rewards/accuracies")
                                if k in row)
                self.log(f"step {step + 1}/{self.total} loss {loss:.4f} lr {row['lr']:.2e}{extra}")
            if c.save_every and (step + 1) % c.save_every == 0 and step + 1 < self.total:
                checkpoint.save(self.out, step + 1, self.trainable, self.optimizer, self.scheduler,
                                settings_hash(c), self.rank, self.world, acc.wait_for_everyone, c.keep_checkpoints)
        if self.total > start:
            checkpoint.save(self.out, self.total, self.trainable, self.optimizer, self.scheduler, settings_hash(c),
                            self.rank, self.world, acc.wait_for_everyone, c.keep_checkpoints)
        self.export()
        if self.main:  # written last: its presence means the run, export included, finished
            (self.out / "summary.json").write_text(json.dumps({"steps": self.total, "final_loss": loss}))
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
            import copy

            # Merged on the CPU: training is over, and a copy on the GPU would double the model's memory there at
            # the very end of a run (+26 GB for a 13B model in bf16). The trained model stays intact (and on CPU).
            model = copy.deepcopy(model.cpu()).merge_and_unload()
        model.save_pretrained(self.out / "model")
        self.vlm.processor.save_pretrained(self.out / "model")
        self.log(f"model written to {self.out / 'model'}")


def resolve_model(name: str) -> str:
    """A shapes-world model name (world-base, or world:world-base) -> its folder; a hub id or path as it is."""
    if not name.startswith(WORLD_PREFIX) and name in world_model_names() and not Path(name).exists():
        name = WORLD_PREFIX + name
    return model_path(name)


def train(config: TrainConfig, out: str | Path, resume: bool = True, log=print) -> TrainResult:
    return Trainer(config, out, resume, log).run()
