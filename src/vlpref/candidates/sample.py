"""`vlpref sample`: N responses per prompt from a pool of models, each with its own decoding settings; resumable.

    vlpref sample --out runs/cands                      # the world's prefs prompts, the world base model
    vlpref sample --config recipes/vlfeedback_data.yaml --out runs/cands

    >>> from vlpref.candidates.sample import SampleConfig, sample
    >>> candidates = sample(SampleConfig(), "runs/cands")

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

Backends: `local` (transformers, batched and left-padded through `vlpref.models.vlm.VLM`). A model named
`world:<name>` is one of the shapes world's shipped models (`world:world-base` is the default pool).
"""

from __future__ import annotations

import hashlib
import os
import random
from io import BytesIO
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.augment import AugmentConfig, augment
from vlpref.data.images import load_image, record_image_digests, resolve_image
from vlpref.data.schema import Candidate, DecodingParams, Prompt
from vlpref.data.steerlm import check_targets, steered
from vlpref.data.store import read_records, write_records
from vlpref.errors import ConfigError
from vlpref.journal import Journal, clear_failures, content_key, report_failures
from vlpref.models.remote import RemoteEndpoint, check_backend
from vlpref.world.models import model_path, short_name


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
    world_tasks: list[Literal["describe", "open", "pope", "qa"]] = Field(
        default_factory=lambda: ["describe", "open", "pope", "qa"],
        description="the world prefs split's tasks, when prompts is none (a paper's prompt mix, e.g. SeVa: no "
                    "yes/no questions)")
    pool: list[PoolMember] = Field(default_factory=lambda: [PoolMember()], min_length=1)
    augment: AugmentConfig | None = Field(default=None, description="also answer under augmented images (SeVa)")
    original: bool = Field(default=True, description="answer under the original images")
    models_per_prompt: int | None = Field(default=None, ge=1, description="answer each prompt with this many pool "
                                          "members drawn at random (VLFeedback: 4 of 12); none: every member")
    seed: int = 0


def resolve_prompts(config_prompts: str | None, out: Path, world_images: int, seed: int,
                    tasks: tuple[str, ...] = ("describe", "open", "pope", "qa")) -> Path:
    """The prompts folder: the given one, or the world's prefs split built (once) under out/prompts."""
    if config_prompts is not None:
        return Path(config_prompts)
    root = out / "prompts"
    if not (root / "records.jsonl").is_file():
        from vlpref.world.tasks import build_split

        build_split(root, "prefs", world_images, tasks=tuple(tasks), seed=seed)
    return root


def _load(root: Path, relative: str, candidate: Candidate, i: int):
    return load_image(root, relative, file=root, record_id=candidate.id, field=f"images[{i}]")


def augmented_images(prompt: Prompt, root: Path, out: Path, config: AugmentConfig) -> list[str]:
    """Write and return the augmented copies of a prompt's images, relative to `out`.

    Augmentation is deterministic, so the bytes are made again on every run and a file that differs (a write cut
    short by a kill) is replaced; the replacement is atomic (temporary file, then rename)."""
    names = []
    for i, relative in enumerate(prompt.images):
        # The folder names the whole augmentation (op, step, space, seed …), so changing any of it never reuses
        # images (or answers) made under another.
        folder = f"{config.tag()}-{content_key(config.model_dump())[:8]}"
        name = f"images/{folder}/{hashlib.sha256(f'{prompt.id}|{i}'.encode()).hexdigest()[:16]}.png"
        source = load_image(root, relative, file=root, record_id=prompt.id, field=f"images[{i}]")
        buffer = BytesIO()
        augment(source, config, key=f"{prompt.id}|{i}").save(buffer, format="PNG")
        target = resolve_image(out, name)
        if not target.is_file() or target.read_bytes() != buffer.getvalue():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, target)
        names.append(name)
    return names


def sample(config: SampleConfig, out: str | Path, log=print) -> list[Candidate]:
    """Sample every request not yet in out/journal.sqlite, then write out/records.jsonl (candidates)."""
    from vlpref.models.vlm import VLM, Chat

    out = Path(out)
    names = [m.name for m in config.pool]
    if len(set(names)) != len(names):
        raise ConfigError(f"pool: model ids must be unique, got {names}; set `id` on each member")
    if not config.original and config.augment is None:
        raise ConfigError("original is false and augment is unset: there is nothing to sample")
    root = resolve_prompts(config.prompts, out, config.world_images, config.seed, tuple(config.world_tasks))
    prompts: list[Prompt] = read_records(root)
    journal = Journal(out / "journal.sqlite")
    clear_failures(out)
    variants: list[tuple[str, AugmentConfig | None]] = ([("original", None)] if config.original else []) + (
        [(config.augment.tag(), config.augment)] if config.augment else [])

    # Every request, in output order: (candidate, journal key, chat images root, image names).
    plan: list[tuple[PoolMember, Candidate, str, Path, list[str]]] = []
    for prompt in prompts:
        digest = record_image_digests(root, prompt)
        images_of = {variant: augmented_images(prompt, root, out, aug) if aug else list(prompt.images)
                     for variant, aug in variants}  # made once per prompt, shared by every pool member
        members = config.pool
        if config.models_per_prompt is not None and config.models_per_prompt < len(members):
            draw = random.Random(content_key("members", config.seed, prompt.id))
            chosen = set(draw.sample(range(len(members)), config.models_per_prompt))
            members = [m for i, m in enumerate(members) if i in chosen]
        for member in members:
            for variant, aug in variants:
                images = images_of[variant]
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
                                          images=images if aug else None)
                    plan.append((member, candidate, key, out if aug else root, images))

    todo = [item for item in plan if journal.get(item[2]) is None]
    log(f"sample: {len(plan)} requests, {len(plan) - len(todo)} already done, {len(todo)} to run")
    by_prompt = {p.id: p for p in prompts}
    failed: list[tuple[str, str]] = []
    for member in config.pool:
        mine = [item for item in todo if item[0] is member]
        if not mine:
            continue
        chat_of = lambda c, r, images, member=member: Chat(  # noqa: E731
            member.query(by_prompt[c.prompt_id]), [_load(r, name, c, i) for i, name in enumerate(images)])
        if member.backend == "openai":
            failed += _sample_remote(member, mine, chat_of, journal, log)
            continue
        vlm = VLM.load(model_path(member.model), dtype=member.dtype, device=member.device, revision=member.revision)
        for start in range(0, len(mine), member.batch_size):
            batch = mine[start : start + member.batch_size]
            chats = [chat_of(c, r, images) for _, c, _, r, images in batch]
            outputs = vlm.generate(chats, [c.decoding for _, c, _, _, _ in batch], batch_size=member.batch_size)
            for (_, _, key, _, _), generated in zip(batch, outputs, strict=True):
                journal.put(key, {"text": generated.text, "finish_reason": generated.finish_reason})
            log(f"sample: {member.name} {min(start + member.batch_size, len(mine))}/{len(mine)}")
        del vlm

    candidates = []
    for _, candidate, key, _, _ in plan:
        done = journal.get(key)
        if done is not None:
            candidates.append(candidate.model_copy(update={"text": done["text"],
                                                           "finish_reason": done["finish_reason"]}))
    write_records(out, "candidates", candidates, prompts=str(root.resolve()), config=config.model_dump(),
                  config_hash=content_key(config.model_dump()), incomplete=len(failed))
    journal.close()
    report_failures(out, failed, "request(s)", "candidate", done=f"{len(candidates)} candidates written; ")
    return candidates


def _sample_remote(member: PoolMember, mine: list, chat_of, journal: Journal, log) -> list[tuple[str, str]]:
    """Send a member's unfinished requests to its endpoint; journal each result as it lands."""
    from vlpref.models.chat_api import to_openai_messages
    from vlpref.models.remote import Completion, RemoteChat

    def make(c, r, images):  # built when the request is sent, not all up front
        def messages():
            chat = chat_of(c, r, images)
            return to_openai_messages(chat.turns, chat.images)
        return messages

    messages = [make(c, r, images) for _, c, _, r, images in mine]
    failed: list[tuple[str, str]] = []

    def on_done(i: int, result) -> None:
        _, candidate, key, _, _ = mine[i]
        if isinstance(result, Completion):
            journal.put(key, {"text": result.text, "finish_reason": _finish(result.finish_reason)})
        else:
            journal.fail(key, result.reason)
            failed.append((candidate.id, result.reason))

    RemoteChat(member.endpoint).run(messages, [c.decoding for _, c, _, _, _ in mine], on_done=on_done)
    log(f"sample: {member.name} {len(mine) - len(failed)}/{len(mine)} done, {len(failed)} failed")
    return failed


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length") else "unknown"
