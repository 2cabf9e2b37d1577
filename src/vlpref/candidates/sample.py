"""`vlpref sample`: N responses per prompt from a pool of models, each with its own decoding settings; resumable.

    vlpref sample --out runs/cands                      # the world's prefs prompts, the world base model
    vlpref sample --config recipes/vlfeedback/data_world.yaml --out runs/cands   # the recipe's `sample` section

    >>> from vlpref.candidates.sample import SampleConfig, sample
    >>> candidates = sample(SampleConfig(prompts="data/prompts"), "runs/cands")

Each (prompt, model, image variant, index) is one request. Its result goes into the journal (`vlpref.journal`) the
moment it is back, keyed by a hash of everything it depends on (the model, the prompt's text and image bytes, the
decoding settings and the request's seed), so a killed run started again repeats no finished request. When every
request is done, the candidates are written in input order: the output of an interrupted run equals an
uninterrupted one's.

Seeds: a request's seed is derived from (config seed, prompt id, model id, variant, index) unless its decoding sets
one, so sampling is reproducible and independent of batching (the VLM layer seeds each row on its own).

Image variants: with `augment` set, every prompt is also answered under its augmented images (SeVa's rejected
side). The augmented images are written under out/images/<augmentation>-<config hash>/ and named on those
candidates.

Backends: `local` (transformers, batched and left-padded through `vlpref.models.vlm.VLM`) and `openai` (any
OpenAI-compatible endpoint, concurrent requests). A model named `world:<name>` is one of the shapes world's shipped
models (`world:world-base` is the default pool). With no prompts folder, the `vlpref sample` command
(`vlpref.prefs.run_sample`) builds the shapes world's prefs split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.augment import AugmentConfig, write_augmented
from vlpref.data.images import load_image, record_image_digests
from vlpref.data.schema import Candidate, DecodingParams, Prompt
from vlpref.data.steerlm import check_targets, steered
from vlpref.data.store import read_records, write_records
from vlpref.errors import ConfigError
from vlpref.journal import Journal, content_key, run_journalled
from vlpref.models.names import resolve_model, short_name
from vlpref.models.remote import RemoteEndpoint, check_backend


class PoolMember(StrictModel):
    """One model of the pool and how it samples."""

    model: str = Field(default="world:world-base", description="HF hub id, local path, or world:<name>")
    id: str | None = Field(default=None, description="name in candidate ids; default: the model's last path part")
    n: int = Field(default=2, ge=1, description="responses per prompt (per image variant)")
    decoding: DecodingParams = Field(default_factory=lambda: DecodingParams(temperature=1.0, max_new_tokens=64))
    backend: Literal["local", "openai"] = Field(
        default="local", description="local: transformers in this process; openai: any OpenAI-compatible endpoint")
    endpoint: RemoteEndpoint | None = Field(default=None, description="the endpoint, for backend openai")
    revision: str | None = None
    dtype: str = Field(default="float32", description="torch dtype of a local model: float32, bfloat16, float16")
    device: str | None = None
    batch_size: int = Field(default=16, ge=1)
    steer: dict[str, float] | None = Field(
        default=None, description="SteerLM: ask for these HelpSteer attribute values (e.g. all 4), appended to the "
                                  "question as the model was trained (vlpref.data.steerlm)")

    def query(self, prompt: Prompt) -> list:
        """The turns this member answers: the prompt's, steered if the member is a SteerLM model."""
        return steered(prompt.query, self.steer) if self.steer else prompt.query

    @property
    def name(self) -> str:
        if self.id:
            return self.id
        model = self.endpoint.model if self.endpoint else self.model
        return short_name(model)

    def identity(self) -> list:
        """What the model's answers depend on, for journal keys: never the API key. (Steering changes the
        question, which is in the key already.)"""
        if self.endpoint is not None:
            return [self.endpoint.base_url, self.endpoint.model]
        return [self.model, self.revision, self.dtype]

    @model_validator(mode="after")
    def _steer_has_every_attribute(self) -> PoolMember:
        if self.steer is not None:
            check_targets(self.steer)
        return self

    @model_validator(mode="after")
    def _endpoint_iff_remote(self) -> PoolMember:
        check_backend(self.backend, self.endpoint, self.model if self.backend == "local" else None)
        return self


class SampleConfig(StrictModel):
    recipe: Literal["sample"] = "sample"
    prompts: str | None = Field(default=None, description="prompts dataset folder; none: the world's prefs split")
    world_images: int = Field(default=10, ge=1, description="scenes of the world prefs split, when prompts is none")
    world_tasks: list[Literal["describe", "open", "pope", "qa", "relation"]] = Field(
        default_factory=lambda: ["describe", "open", "pope", "qa", "relation"],
        description="the world prefs split's tasks, when prompts is none (a paper's prompt mix, e.g. SeVa: no "
                    "yes/no questions)")
    pool: list[PoolMember] = Field(default_factory=lambda: [PoolMember()], min_length=1)
    augment: AugmentConfig | None = Field(default=None, description="also answer under augmented images (SeVa)")
    original: bool = Field(default=True, description="answer under the original images")
    models_per_prompt: int | None = Field(default=None, ge=1, description="answer each prompt with this many pool "
                                          "members drawn at random (VLFeedback: 4 of 12); none: every member")
    seed: int = 0


def _load(root: Path, relative: str, candidate: Candidate, i: int):
    return load_image(root, relative, file=root, record_id=candidate.id, field=f"images[{i}]")


@dataclass(frozen=True)
class Request:
    """One response to sample: which member answers which prompt, under which images, as which candidate."""

    member: PoolMember
    candidate: Candidate  # text still empty
    key: str  # journal key: everything the answer depends on
    root: Path  # the folder the image names are relative to (the prompts folder, or out/ for augmented images)
    images: list[str]


def sample(config: SampleConfig, out: str | Path, log=print) -> list[Candidate]:
    """Sample every request not yet in out/journal.sqlite, then write out/records.jsonl (candidates)."""
    out = Path(out)
    names = [m.name for m in config.pool]
    if len(set(names)) != len(names):
        raise ConfigError(f"pool: model ids must be unique, got {names}; set `id` on each member")
    if not config.original and config.augment is None:
        raise ConfigError("original is false and augment is unset: there is nothing to sample")
    if config.prompts is None:
        raise ConfigError("sample: prompts is unset; name a prompts folder (the `vlpref sample` and `vlpref prefs` "
                          "commands build the shapes world's prefs split when it is unset)")
    for member in config.pool:  # a model that cannot load fails now, not after the plan is journalled
        if member.backend == "local":
            resolve_model(member.model)
    root = Path(config.prompts)
    prompts: list[Prompt] = read_records(root, kind="prompts")
    journal = Journal(out / "journal.sqlite")
    plan = _plan(config, prompts, root, out)
    by_prompt = {p.id: p for p in prompts}

    def run(pending: list[int], landed) -> None:
        for member in config.pool:
            mine = [j for j, i in enumerate(pending) if plan[i].member is member]
            if mine:
                _answer(member, [plan[pending[j]] for j in mine], by_prompt,
                        lambda k, result, mine=mine: landed(mine[k], result), log)

    done = run_journalled(journal, [r.key for r in plan], [r.candidate.id for r in plan], run, out,
                          field="candidate", encode=lambda result: {"text": result.text,
                                                                    "finish_reason": _finish(result.finish_reason)},
                          announce=lambda n, todo: log(f"sample: {n} requests, {n - todo} already done, "
                                                       f"{todo} to run"))
    candidates = [r.candidate.model_copy(update=value) for r, value in zip(plan, done.values, strict=True)
                  if value is not None]
    write_records(out, "candidates", candidates, prompts=str(root.resolve()), config=config.model_dump(),
                  config_hash=content_key(config.model_dump()), incomplete=len(done.failed))
    journal.close()
    done.raise_failures("request(s)", done=f"{len(candidates)} candidates written; ")
    return candidates


def _plan(config: SampleConfig, prompts: list[Prompt], root: Path, out: Path) -> list[Request]:
    """Every request, in output order: prompt, then member, then image variant, then index."""
    variants: list[tuple[str, AugmentConfig | None]] = ([("original", None)] if config.original else []) + (
        [(config.augment.tag(), config.augment)] if config.augment else [])
    plan = []
    for prompt in prompts:
        digest = record_image_digests(root, prompt)
        images_of = {variant: write_augmented(prompt, root, out, aug) if aug else list(prompt.images)
                     for variant, aug in variants}  # made once per prompt, shared by every pool member
        members = config.pool
        if config.models_per_prompt is not None and config.models_per_prompt < len(members):
            draw = random.Random(content_key("members", config.seed, prompt.id))
            chosen = set(draw.sample(range(len(members)), config.models_per_prompt))
            members = [m for i, m in enumerate(members) if i in chosen]
        for member in members:
            for variant, aug in variants:
                for index in range(member.n):
                    suffix = str(index) if aug is None else f"{variant}-{index}"
                    if member.decoding.seed is None:
                        seed = int(content_key(config.seed, prompt.id, member.name, suffix)[:8], 16)
                    else:  # a fixed seed still gives each of the n responses its own (same one per variant)
                        seed = member.decoding.seed + index
                    decoding = member.decoding.model_copy(update={"seed": seed})
                    key = content_key("sample", member.identity(), [t.model_dump() for t in member.query(prompt)],
                                      digest, aug.model_dump() if aug else variant, decoding.model_dump())
                    candidate = Candidate(id=f"{prompt.id}/{member.name}/{suffix}", prompt_id=prompt.id,
                                          model_id=member.name, text="", decoding=decoding,
                                          images=images_of[variant] if aug else None, variant=variant, index=index)
                    plan.append(Request(member, candidate, key, out if aug else root, images_of[variant]))
    return plan


def _answer(member: PoolMember, requests: list[Request], by_prompt: dict[str, Prompt], landed, log) -> None:
    """One member's answers to `requests`; `landed(k, result)` for requests[k] as each arrives (a Generation, a
    Completion, or a Failure with its reason)."""
    from vlpref.models.vlm import VLM, Chat

    def chat(r: Request) -> Chat:
        return Chat(member.query(by_prompt[r.candidate.prompt_id]),
                    [_load(r.root, name, r.candidate, i) for i, name in enumerate(r.images)])

    if member.backend == "openai":
        from vlpref.models.chat_api import to_openai_messages
        from vlpref.models.remote import Failure, RemoteChat

        def messages(r: Request):  # built when the request is sent, not all up front
            def build():
                c = chat(r)
                return to_openai_messages(c.turns, c.images)
            return build

        failures = []

        def on_done(k: int, result) -> None:
            if isinstance(result, Failure):
                failures.append(k)
            landed(k, result)

        RemoteChat(member.endpoint).run([messages(r) for r in requests], [r.candidate.decoding for r in requests],
                                        on_done=on_done)
        log(f"sample: {member.name} {len(requests) - len(failures)}/{len(requests)} done, {len(failures)} failed")
        return
    vlm = VLM.load(resolve_model(member.model), dtype=member.dtype, device=member.device, revision=member.revision)
    for start in range(0, len(requests), member.batch_size):
        batch = requests[start : start + member.batch_size]
        outputs = vlm.generate([chat(r) for r in batch], [r.candidate.decoding for r in batch],
                               batch_size=member.batch_size)
        for k, generated in enumerate(outputs, start):
            landed(k, generated)
        log(f"sample: {member.name} {min(start + member.batch_size, len(requests))}/{len(requests)}")
    del vlm


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length") else "unknown"
