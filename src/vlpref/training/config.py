"""The training stage's typed config: `vlpref train --config recipes/seva/train_world.yaml`.

    >>> from vlpref.training.config import TrainConfig
    >>> TrainConfig(method="dpo", data="runs/seva-data/pairs", lr=2e-6, lora={"r": 16, "alpha": 32})

Defaults follow the papers where they agree (β 0.1, sigmoid DPO on summed log-probs, cosine schedule, LoRA on the
language model's linear layers, vision tower frozen); each paper's recipe sets the rest (methods.md §§1.4–4.3).

The config is flat (one YAML mapping), but a key the chosen method, objective or finetuning does not read is an
error naming the key and what reads it (`READ_UNDER`), e.g. `beta` with method sft, `image_negative` with objective
dpo, `loss_type` with objective povid:

    >>> TrainConfig(method="sft", data="runs/prompts", beta=0.5)
    ValidationError: ... beta is not read with method: sft; it is read with method: dpo
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.augment import AugmentConfig
from vlpref.numerics.preference import LossType
from vlpref.training.data import Truncation

Method = Literal["sft", "rs", "steerlm", "dpo"]

# Keys read only under a choice another key makes: key -> (that key, the values under which it is read). A key set
# explicitly (`model_fields_set`: in the YAML, on the command line) while the choice says otherwise is an error that
# names it, since config that silently does nothing is the commonest bug class in peer toolkits (TRL dropping YAML
# keys, torchtune never reading `clip_grad_norm`). Chains are followed: `loss_type` needs objective dpo, which
# itself is read only with method dpo.
READ_UNDER: dict[str, tuple[str, tuple[object, ...]]] = {
    "objective": ("method", ("dpo",)),
    "beta": ("method", ("dpo",)),
    "reference": ("method", ("dpo",)),
    "reference_cache": ("reference", ("precomputed",)),
    "image_negative": ("objective", ("povid", "mdpo")),
    "loss_type": ("objective", ("dpo",)),  # POVID and mDPO are built on sigmoid DPO as their papers define it
    "label_smoothing": ("objective", ("dpo",)),
    "length_normalized": ("objective", ("dpo",)),
    "sft_weight": ("method", ("dpo",)),  # every preference objective takes it; SFT methods are all NLL already
    "lora": ("finetune", ("lora",)),
    "merge_lora": ("finetune", ("lora",)),
    "projector_lr": ("freeze_projector", (False,)),
}


def _shown(value: object) -> str:
    """A value as the YAML would spell it (true / false for booleans)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class LoraSettings(StrictModel):
    r: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear",
        description="module names (e.g. [q_proj, v_proj]) or every linear layer of the language model "
                    "(vision tower, projector and LM head excluded)")


class TrainConfig(StrictModel):
    recipe: Literal["training"] = Field(default="training", description="marks a training recipe file")
    method: Method = Field(description="sft, rs (rejection sampling), steerlm: SFT on the data's target answers; "
                                       "dpo: a preference objective on pairs")
    data: str = Field(description="a dataset folder: pairs for dpo; prompts with target answers (or pairs, whose "
                                  "chosen side is the target) for sft, rs and steerlm")
    model: str = Field(default="world:world-base", description="hub id, local folder, or world:<name>")
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="weights' dtype; bf16 weights + `mixed_precision: bf16` on GPUs")
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    device: Literal["auto", "cpu"] = Field(default="auto", description="auto: accelerate's choice (GPU if present)")

    # the objective (dpo)
    objective: Literal["dpo", "povid", "mdpo"] = Field(
        default="dpo", description="dpo: the DPO family (loss_type); povid: POVID's stage 2 (+ the noised-image "
                                   "negative); mdpo: mDPO (+ image-conditional and anchor terms)")
    image_negative: AugmentConfig | None = Field(
        default=None, description="povid / mdpo: the image distortion (default: POVID's diffusion noise at step 500 "
                                  "on pixels; mDPO's 1-20% crop)")
    loss_type: LossType = "sigmoid"
    beta: float = Field(default=0.1, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    length_normalized: bool = False
    sft_weight: float = Field(default=0.0, ge=0.0, description="λ of an NLL term on the chosen response")
    reference: Literal["precomputed", "online"] = Field(
        default="precomputed",
        description="precomputed: reference log-probs computed once before training (with LoRA: the base model; "
                    "full fine-tuning: the initial weights) and cached on disk; online: every step, with the "
                    "adapters disabled (LoRA) or a frozen copy (full fine-tuning)")
    reference_cache: str | None = Field(
        default=None, description="sqlite file of cached reference log-probs (default: <out>/reference.sqlite); "
                                  "point runs at one file to share them")

    # what trains
    finetune: Literal["lora", "full"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    freeze_vision: bool = True
    freeze_projector: bool = Field(default=True, description="false: the projector trains too (full weights, "
                                                              "at projector_lr)")
    projector_lr: float | None = Field(default=None, ge=0, description="default: lr")

    # optimisation
    lr: float = Field(default=1e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1,
                                  description="train this many optimizer steps, whatever `epochs` says (HF's rule)")
    batch_size: int = Field(default=2, ge=1, description="examples per process per micro-step")
    grad_accum: int = Field(default=1, ge=1)
    seed: int = 0
    max_length: int = Field(default=2048, ge=2, description="prompt (image tokens included) + response tokens")
    truncation: Truncation = "response"
    prefix_sharing: bool = Field(default=True, description="encode image + prompt once per pair")
    gradient_checkpointing: bool = False
    sharding: Literal["none", "fsdp"] = Field(
        default="none", description="fsdp: shard parameters, gradients and optimizer state over the processes "
        "(torch FSDP2 on each transformer block); none: DDP, every process holds the whole model")

    # outputs
    # Checkpoints are also written at the end of the run and when SIGINT / SIGTERM stops it (trainer.py), so that a
    # run loses at most `save_minutes` of work by default, whatever its length: a step count fits no model size.
    save_every: int = Field(default=0, ge=0, description="also checkpoint every N optimizer steps (0: off)")
    save_minutes: float = Field(default=10.0, ge=0, description="also checkpoint when this many minutes have passed "
                                                                "since the last checkpoint (0: off)")
    save_each_epoch: bool = Field(default=True, description="also checkpoint at the end of each epoch")
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=1, ge=1)
    report_to: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)
    merge_lora: bool = Field(default=True, description="export the LoRA merged into a standard HF model folder")

    def _unread(self, key: str) -> tuple[str, object] | None:
        """The (key, value) of the choice under which `key` is not read (the highest up its chain), or None."""
        decider, values = READ_UNDER[key]
        if decider in READ_UNDER and (higher := self._unread(decider)) is not None:
            return higher
        value = getattr(self, decider)
        return None if value in values else (decider, value)

    def _refuse_unread(self) -> None:
        problems = []
        for key in READ_UNDER:
            if key not in self.model_fields_set or (blocker := self._unread(key)) is None:
                continue
            readers, at = [], key  # the conditions from `key` up to the blocker: "objective povid or mdpo, method dpo"
            while True:
                decider, values = READ_UNDER[at]
                readers.append(f"{decider}: {' or '.join(map(_shown, values))}")
                if decider == blocker[0]:
                    break
                at = decider
            problems.append(f"{key} is not read with {blocker[0]}: {_shown(blocker[1])}; "
                            f"it is read with {', '.join(readers)}")
        if problems:  # one line: config errors are reported one line per problem
            raise ValueError(". ".join(problems))

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        self._refuse_unread()
        full_parts = self.finetune == "full" or not self.freeze_projector or not self.freeze_vision
        if self.finetune == "lora" and self.reference == "online" and full_parts:
            raise ValueError("reference: online with LoRA is the model with its adapters disabled, which still "
                             "has the projector / vision weights being trained; use reference: precomputed")
        if self.sharding == "fsdp" and self.mixed_precision == "fp16":
            raise ValueError("sharding: fsdp trains in float32 or under bf16 autocast; fp16 needs a loss scaler the "
                             "sharded loop does not run (use mixed_precision: bf16)")
        if self.dtype != "float32" and full_parts and self.mixed_precision == "no":
            raise ValueError(f"full weights stored in {self.dtype} lose AdamW updates smaller than half a "
                             f"{self.dtype} step; set mixed_precision: bf16 (they are then kept in float32)")
        return self
