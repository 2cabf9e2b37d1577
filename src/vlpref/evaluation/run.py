"""`vlpref eval --benchmark NAME --model M --data PATH`: a model's answers to a benchmark, from the user's local copy
of its official files, judged where the benchmark needs a judge and scored exactly as the official scripts score.

    vlpref eval --benchmark pope --model llava-hf/llava-1.5-7b-hf --data ~/pope/output/coco \\
        --images ~/coco/val2014 --out runs/eval/pope
    vlpref eval --benchmark mmhal --model runs/dpo/model --data ~/MMHal-Bench \\
        --judge-url https://api.openai.com/v1 --judge-model gpt-4o --out runs/eval/mmhal
    vlpref eval --benchmark world --model world:world-base --out runs/eval/world

    >>> results = evaluate(EvalConfig(benchmark="world", world_images=24), "runs/eval/world")

Every answer and every judge reply is journalled in OUT/journal.sqlite under a hash of everything it depends on:
for an answer the model's fingerprint (its files) and dtype, the prompt turns, the images' bytes and the decoding
settings; for a judge reply the judge, the messages and the decoding settings. So a killed run started again goes
on where it stopped, and a rerun (say, after changing only the report) makes no model or judge call. Another
checkpoint, prompt format or judge makes new keys, never a stale hit.

Each benchmark's module (`vlpref.evaluation.<benchmark>`, one file each, top to bottom) reads the official layout,
builds prompts in the official format, writes the answers and judge outputs in the official layouts (so
`vlpref eval score` or the official scripts can score them again) and returns the numbers `vlpref.numerics` computes.
Judge failures after the client's retries are journalled and the command exits non-zero naming them; the next run
asks only those again. An unparseable judge reply is not a failure: it is scored as the official script scores it and
counted in the results (`parse_failures`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.schema import DecodingParams, Turn
from vlpref.errors import VlprefError
from vlpref.journal import Journal, clear_failures, content_key, report_failures
from vlpref.models.remote import Completion, RemoteEndpoint, check_backend

BENCHMARKS = ("pope", "mme", "chair", "mmhal", "mmvet", "llava-bench", "mtbench", "amber", "world")
JUDGED = ("mmhal", "mmvet", "llava-bench", "mtbench")


class JudgeSettings(StrictModel):
    backend: Literal["openai", "local"] = Field(
        default="openai", description="openai: an OpenAI-compatible endpoint; local: a transformers model")
    endpoint: RemoteEndpoint | None = Field(default=None, description="backend openai: the judge endpoint")
    model: str | None = Field(default=None, description="backend local: hub id, path or world:<name>")
    prompt: str | None = Field(
        default=None, description="a file with the official judge prompt, for numbers comparable with published "
        "ones (mmhal: the template string; mmvet: the few-shot prompt; llava-bench: rule.json; mtbench: "
        "judge_prompts.jsonl); default: our paraphrase")

    @model_validator(mode="after")
    def _backend_settings(self) -> JudgeSettings:
        check_backend(self.backend, self.endpoint, self.model)
        return self

    def judge_id(self) -> str:
        """Who judged, for the results and the journal keys (never an API key)."""
        return f"{self.endpoint.model}@{self.endpoint.base_url}" if self.backend == "openai" else str(self.model)


class EvalConfig(StrictModel):
    recipe: Literal["eval"] = "eval"
    benchmark: Literal[BENCHMARKS] = Field(description=", ".join(BENCHMARKS))
    model: str = Field(default="world:world-base", description="hub id, path or world:<name>")
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str | None = Field(default=None, description="e.g. cuda; default: cuda when available, else cpu")
    data: str | None = Field(default=None, description="the benchmark's official files (your local copy)")
    images: str | None = Field(default=None, description="the images folder, where it is not inside `data`")
    style: Literal["llava", "official", "lmms-eval"] = Field(
        default="llava", description="prompt format: LLaVA-1.5's eval scripts, the benchmark authors' own, or "
        "lmms-eval's (where they differ; see each benchmark's module)")
    scoring: Literal["official", "lmms-eval"] = Field(
        default="official", description="pope: the official parser, or lmms-eval's exact-match scoring")
    batch_size: int | None = Field(default=None, ge=1, description="generation batch; default 8 (world: 128)")
    max_new_tokens: int | None = Field(default=None, ge=1, description="default: the benchmark's own setting")
    limit: int | None = Field(default=None, ge=1, description="only the first N questions (a smoke run; the "
                              "numbers are then not comparable with published ones)")
    judge: JudgeSettings | None = Field(default=None, description=f"needed by {', '.join(JUDGED)}")
    chair_images: int = Field(default=500, ge=1, description="chair: images drawn from val2014")
    chair_seed: int = Field(default=0, description="chair: the seed of that draw")
    chair_image_ids: str | None = Field(default=None, description="chair: a file of image ids to use instead")
    chair_variants: list[Literal["lemmatize", "singularize"]] = Field(
        default=["lemmatize", "singularize"], description="chair: OPERA's lemmatize and the original singularize")
    amber_tasks: list[Literal["discriminative", "generative"]] = Field(
        default=["discriminative", "generative"], description="amber: the tasks to run")
    world_images: int = Field(default=300, ge=1, description="world: scenes in the eval split when it is built")
    steer: str | None = Field(default=None, description="world, SteerLM models: the attribute values to ask for, "
                              "e.g. 'Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4'")

    @model_validator(mode="after")
    def _needs(self) -> EvalConfig:
        if self.benchmark != "world" and self.data is None:
            raise ValueError(f"data: {self.benchmark} reads its official files from a local folder; set data")
        if self.benchmark in JUDGED and self.judge is None:
            raise ValueError(f"judge: {self.benchmark} is judged by a model; set judge (e.g. --judge-url and "
                             "--judge-model)")
        return self


@dataclass
class Question:
    """One generation request: chat turns with `<image>` placeholders and the image files they show, in order."""

    id: str
    turns: list[Turn]
    images: list[Path] = field(default_factory=list)
    decoding: DecodingParams = field(default_factory=lambda: DecodingParams(temperature=0.0))
    source: str = ""  # the file the question came from, for error messages


@dataclass
class JudgeRequest:
    id: str
    messages: list[dict[str, Any]]  # OpenAI chat messages (text only: every official judge here reads no image)
    decoding: DecodingParams
    item: str | None = None  # the Question.id this judges, for the per-item view (default: `id`)


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path` (absolute, or relative to `root`) lies inside `root` as written: '..' is resolved, symlinks
    are not (so a folder the user linked in stays in)."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, path))
    return target == base or target.startswith(base + os.sep)


def greedy(max_new_tokens: int) -> DecodingParams:
    return DecodingParams(temperature=0.0, max_new_tokens=max_new_tokens)


def read_json(path: Path, what: str):
    if not path.is_file():
        raise VlprefError(f"{what}: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VlprefError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None


def read_jsonl(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise VlprefError(f"{what}: {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise VlprefError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


class Session:
    """What a benchmark module calls: `answers` (the model, cached) and `judge` (the judge, cached)."""

    def __init__(self, config: EvalConfig, out: Path, log=print):
        self.config, self.out, self.log = config, out, log
        self.journal = Journal(out / "journal.sqlite")
        self.counts = {"answers_generated": 0, "answers_cached": 0, "judge_calls": 0, "judge_cached": 0}
        self._vlm = None
        self._fingerprint: str | None = None
        self._complete = None
        self._digests: dict[Path, str] = {}
        # question id -> what the per-item view shows (OUT/items.jsonl): prompt, images, answer, judge reply, and
        # whatever the benchmark adds with `detail` (reference answer, label, rating, ...)
        self.items: dict[str, dict[str, Any]] = {}

    def detail(self, item: str, **fields: Any) -> None:
        """Add fields to one question's entry in OUT/items.jsonl (e.g. reference=..., rating=...)."""
        self.items.setdefault(item, {"id": item}).update(fields)

    # -- the model -------------------------------------------------------------------------------------------------
    def data(self) -> Path:
        # absolute (items.jsonl names images the viewer must find from anywhere) but not resolved: a symlinked
        # images folder inside DATA stays inside it
        return Path(self.config.data).expanduser().absolute()

    def images_root(self, default: str = "images") -> Path:
        """The images folder: `images` if given, else DATA/<default> when it exists, else DATA."""
        if self.config.images:
            return Path(self.config.images).expanduser().absolute()
        inside = self.data() / default
        return inside if inside.is_dir() else self.data()

    def max_new_tokens(self, default: int) -> int:
        return self.config.max_new_tokens or default

    def limited(self, items: list) -> list:
        return items[: self.config.limit] if self.config.limit else items

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from vlpref.models.fingerprint import model_fingerprint
            from vlpref.world.models import model_path

            self._fingerprint = model_fingerprint(model_path(self.config.model), self.config.revision,
                                                  self.config.dtype)
        return self._fingerprint

    def vlm(self):
        if self._vlm is None:
            import torch

            from vlpref.models.vlm import VLM
            from vlpref.world.models import model_path

            device = self.config.device or ("cuda" if torch.cuda.is_available() else None)
            self.log(f"loading {self.config.model} ({self.config.dtype}, {device or 'cpu'})")
            self._vlm = VLM.load(model_path(self.config.model), dtype=self.config.dtype, device=device,
                                 revision=self.config.revision)
        return self._vlm

    def _digest(self, path: Path) -> str:
        if path not in self._digests:
            self._digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._digests[path]

    def _load_images(self, question: Question) -> list:
        from vlpref.data.images import load_image

        return [load_image(path.parent, path.name, file=question.source or path.parent, record_id=question.id,
                           field=f"image {i}") for i, path in enumerate(question.images)]

    def answers(self, questions: list[Question]) -> list[str]:
        """The model's answer to each question, generated in batches of `batch_size`; each answer is journalled
        the moment its batch finishes, so only unanswered questions reach the model."""
        from vlpref.models.vlm import Chat

        # Images are read only from inside the data folder or the images folder: a question file naming
        # '../../somewhere' (a tampered download) is refused, as dataset records are (vlpref.data.images). The
        # check is on the path as written, so folders the user symlinked into DATA still work.
        roots = ([self.data()] if self.config.data else []) + ([self.images_root()] if self.config.images else [])
        for question in questions:
            for path in question.images:
                if not any(inside(path, root) for root in roots):
                    raise VlprefError(f"{question.source}: question {question.id}: image {path} is outside the "
                                      f"data folder{' and the images folder' if self.config.images else ''}")
            missing = [p for p in question.images if not p.is_file()]
            if missing:
                raise VlprefError(f"{question.source}: question {question.id}: image file not found: {missing[0]}")
        keys = [content_key("answer", self.fingerprint(), self.config.dtype, [t.model_dump() for t in q.turns],
                            [self._digest(p) for p in q.images], q.decoding.model_dump()) for q in questions]
        # The same request twice (POPE's popular and adversarial splits share most questions) is generated once.
        first = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        pending = [i for key, i in first.items() if self.journal.get(key) is None]
        self.counts["answers_cached"] += len(first) - len(pending)
        size = self.config.batch_size or 8
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            chats = [Chat(questions[i].turns, self._load_images(questions[i])) for i in batch]
            generations = self.vlm().generate(chats, [questions[i].decoding for i in batch], size)
            for i, g in zip(batch, generations, strict=True):
                self.journal.put(keys[i], {"text": g.text, "finish_reason": g.finish_reason,
                                           "tokens": len(g.token_ids)})
            self.counts["answers_generated"] += len(batch)
            self.log(f"answered {min(start + size, len(pending))}/{len(pending)} "
                     f"({len(first) - len(pending)} from the journal)")
        texts = [self.journal.get(key)["text"] for key in keys]
        for question, text in zip(questions, texts, strict=True):
            turn = question.turns[-1].text.replace("<image>", "").strip()
            self.detail(question.id, prompt=turn, images=[str(p) for p in question.images], answer=text)
        return texts

    # -- the judge -------------------------------------------------------------------------------------------------
    def _judge_complete(self):
        if self._complete is None:
            from vlpref.models.remote import endpoint_complete, local_complete
            from vlpref.world.models import model_path

            judge = self.config.judge
            self._complete = (endpoint_complete(judge.endpoint) if judge.backend == "openai"
                              else local_complete(model_path(judge.model), self.config.batch_size or 8))
        return self._complete

    def _judge_identity(self) -> str:
        """The judge in cache keys: the endpoint and model name, or a local model's fingerprint (a model retrained
        into the same folder is another judge)."""
        judge = self.config.judge
        if judge.backend == "openai":
            return judge.judge_id()
        from vlpref.models.fingerprint import model_fingerprint
        from vlpref.world.models import model_path

        return f"{judge.model}:{model_fingerprint(model_path(judge.model), None, 'float32')}"

    def judge(self, requests: list[JudgeRequest]) -> list[str]:
        """The judge's reply to each request. Replies are journalled as they land; a request that still fails after
        the client's retries is journalled as failed and, once all have been tried, the run stops naming them."""
        judge_id = self.config.judge.judge_id()
        keys = [content_key("judge", self._judge_identity(), r.messages, r.decoding.model_dump()) for r in requests]
        first: dict[str, int] = {}  # identical requests (same answer to the same question) are sent once
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        pending = [i for key, i in first.items() if self.journal.get(key) is None]
        self.counts["judge_cached"] += len(first) - len(pending)
        failed: list[tuple[str, str]] = []

        def on_done(j: int, result) -> None:
            i = pending[j]
            if isinstance(result, Completion):
                self.journal.put(keys[i], result.text)
                self.counts["judge_calls"] += 1
            else:
                self.journal.fail(keys[i], result.reason)
                failed.append((requests[i].id, result.reason))

        if pending:
            self.log(f"judging {len(pending)} ({len(first) - len(pending)} from the journal) with {judge_id}")
            self._judge_complete()([requests[i].messages for i in pending], [requests[i].decoding for i in pending],
                                   None, on_done)
        report_failures(self.out, failed, "judge calls", "request",
                        "the answers and the other judge replies are journalled; ")
        replies = [self.journal.get(key) for key in keys]
        for request, reply in zip(requests, replies, strict=True):
            self.detail(request.item or request.id, judge=reply)
        return replies

    def judge_prompt_file(self) -> Path | None:
        prompt = self.config.judge.prompt if self.config.judge else None
        if prompt is None:
            return None
        path = Path(prompt).expanduser()
        if not path.is_file():
            raise VlprefError(f"judge.prompt: {path} does not exist")
        return path


def _module(benchmark: str):
    """The benchmark's module: vlpref.evaluation.<benchmark> ('llava-bench' -> llava_bench), one per BENCHMARKS."""
    import importlib

    return importlib.import_module(f"vlpref.evaluation.{benchmark.replace('-', '_')}")


def evaluate(config: EvalConfig, out: str | Path, log=print) -> dict:
    """Run one benchmark; writes OUT/results.json (+ .md, .png), the answers and judge outputs in the official
    layouts, and returns the results."""
    from vlpref.evaluation.report import write_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_failures(out)
    session = Session(config, out, log)
    try:
        results = _module(config.benchmark).run(session)
    finally:
        session.journal.close()
    # the per-item view of `vlpref view`, in question order; always this run's (none for the world)
    write_jsonl(out / "items.jsonl", list(session.items.values()))
    results = {"benchmark": config.benchmark, "model": config.model, **results}
    # where the items' images live: the only folders `vlpref view` serves them from
    results["data_folder"] = str(Path(config.data).expanduser().absolute()) if config.data else None
    results["images_folder"] = str(Path(config.images).expanduser().absolute()) if config.images else None
    if config.benchmark != "world":  # the world's answers are generated afresh (seconds), not journalled
        results.update(judge=config.judge.judge_id() if config.judge else None, calls=session.counts,
                       limit=config.limit)
    write_run(results, out, f"{config.benchmark}: {config.model}")
    return results
