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

`BENCHMARKS` is the table of benchmarks: each one's function (`run(session)` in `vlpref.evaluation.<benchmark>`, one
file each, top to bottom) and the settings it reads beyond the shared ones. A setting the chosen benchmark does not
read is refused, naming the benchmarks that do read it, so no key silently does nothing. Each function reads the
official layout, builds prompts in the official format, asks `Session.answers` and `Session.judge`, writes the
answers and judge outputs in the official layouts (so `vlpref eval score` or the official scripts can score them
again) and returns the numbers the official rules give (`vlpref.evaluation.scoring`). Judge failures after the
client's retries are journalled and the command exits non-zero naming them; the next run asks only those again. An
unparseable judge reply is not a failure: it is scored as the official script scores it and counted in the results
(`parse_failures`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.files import inside, write_jsonl
from vlpref.data.schema import DecodingParams, Turn
from vlpref.errors import VlprefError
from vlpref.journal import Journal, clear_failures, content_key, run_journalled
from vlpref.models.remote import RemoteEndpoint, check_backend


@dataclass(frozen=True)
class Benchmark:
    """One row of `BENCHMARKS`: the function that runs the benchmark, the settings it reads besides `SHARED`, and
    those of them it cannot run without."""

    function: str  # "module:function", called with the run's Session; imported only when the benchmark runs
    reads: tuple[str, ...]
    needs: tuple[str, ...] = ("data",)


# Settings every benchmark reads: which model, how it is loaded, how it generates.
SHARED = ("recipe", "benchmark", "model", "revision", "dtype", "device", "batch_size", "max_new_tokens")
BENCHMARKS: dict[str, Benchmark] = {
    "pope": Benchmark("vlpref.evaluation.pope:run", ("data", "images", "limit", "style", "scoring")),
    "mme": Benchmark("vlpref.evaluation.mme:run", ("data", "limit", "style")),
    "chair": Benchmark("vlpref.evaluation.chair:run",
                       ("data", "images", "chair_images", "chair_seed", "chair_image_ids", "chair_variants")),
    "mmhal": Benchmark("vlpref.evaluation.mmhal:run", ("data", "images", "limit", "judge"), ("data", "judge")),
    "mmvet": Benchmark("vlpref.evaluation.mmvet:run", ("data", "images", "limit", "style", "judge"),
                       ("data", "judge")),
    "llava-bench": Benchmark("vlpref.evaluation.llava_bench:run", ("data", "images", "limit", "style", "judge"),
                             ("data", "judge")),
    "mtbench": Benchmark("vlpref.evaluation.mtbench:run", ("data", "limit", "judge"), ("data", "judge")),
    "amber": Benchmark("vlpref.evaluation.amber:run", ("data", "images", "limit", "style", "amber_tasks")),
    # the world builds its eval split when no data is given
    "world": Benchmark("vlpref.evaluation.world:run", ("data", "world_images", "steer"), needs=()),
}
JUDGED = tuple(name for name, b in BENCHMARKS.items() if "judge" in b.reads)
# What a missing needed setting means, for the message.
NEEDS = {"data": "{} reads its official files from a local folder; set data",
         "judge": "{} is judged by a model; set judge (e.g. --judge-url and --judge-model)"}


def readers(key: str) -> list[str]:
    """The benchmarks that read `key` (every one for a shared setting)."""
    return list(BENCHMARKS) if key in SHARED else [name for name, b in BENCHMARKS.items() if key in b.reads]


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


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
    """The flat settings of `vlpref eval` (the command line's and the YAML's spelling). Which benchmark reads which
    is in `BENCHMARKS`; a setting given for a benchmark that does not read it is an error."""

    recipe: Literal["eval"] = "eval"
    benchmark: Literal[tuple(BENCHMARKS)] = Field(description=", ".join(BENCHMARKS))
    model: str = Field(default="world:world-base", description="hub id, path or world:<name>")
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str | None = Field(default=None, description="e.g. cuda; default: cuda when available, else cpu")
    data: str | None = Field(default=None, description="the benchmark's official files (your local copy); world: "
                             "an eval split (default: one is built)")
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
                              "e.g. 'Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4', or per "
                              "task: 'describe=...;pope=...'")

    @model_validator(mode="after")
    def _read_by_the_benchmark(self) -> EvalConfig:
        # Only the keys given count (a default the benchmark never looks at is harmless); `vlpref eval` passes only
        # the options given on the command line.
        unread = sorted(key for key in self.model_fields_set if self.benchmark not in readers(key))
        problems = [f"{key}: {self.benchmark} does not read it; only {_listing(readers(key))} "
                    f"{'does' if len(readers(key)) == 1 else 'do'}" for key in unread]
        problems += [f"{key}: {NEEDS[key].format(self.benchmark)}" for key in BENCHMARKS[self.benchmark].needs
                     if getattr(self, key) is None]
        if problems:
            raise ValueError("; ".join(problems))
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


def progress(done: int, total: int, seconds: float, note: str = "") -> str:
    """'answered 64/300 (12 from the journal), 8.1/s, ETA 0:29': the count, the rate so far and the time left at
    that rate, for the log (stderr)."""
    rate = done / seconds if seconds > 0 else 0.0
    left = 0 if done >= total else round((total - done) / rate) if rate else None
    if left is None:
        eta = "?"
    else:
        hours, minutes, secs = left // 3600, left % 3600 // 60, left % 60
        eta = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"answered {done}/{total}{f' ({note})' if note else ''}, {rate:.3g}/s, ETA {eta}"


def greedy(max_new_tokens: int) -> DecodingParams:
    return DecodingParams(temperature=0.0, max_new_tokens=max_new_tokens)


class Session:
    """What a benchmark function calls: `answers` (the model, journalled), `judge` (the judge, journalled) and
    `detail` (what `vlpref view` shows of each question)."""

    def __init__(self, config: EvalConfig, out: Path, log=print, vlm=None):
        self.config, self.out, self.log = config, out, log
        self.journal = Journal(out / "journal.sqlite")
        self.counts = {"answers_generated": 0, "answers_cached": 0, "judge_calls": 0, "judge_cached": 0}
        self._vlm = vlm  # a model the caller loaded (`vlpref.evaluation.world.evaluate_world`), else loaded on use
        self._fingerprint: str | None = None
        self._complete = None
        self._digests: dict[Path, str] = {}
        # absolute (items.jsonl names images the viewer must find from anywhere) but not resolved: a symlinked
        # images folder inside DATA stays inside it
        self.data_folder = Path(config.data).expanduser().absolute() if config.data else None
        # question id -> what the per-item view shows (OUT/items.jsonl): prompt, images, answer, judge reply, and
        # whatever the benchmark adds with `detail` (reference answer, label, rating, ...)
        self.items: dict[str, dict[str, Any]] = {}
        # question id -> its images' digests: which eval data the run used (`eval_data`), for `vlpref eval compare`
        self.asked: dict[str, list[str]] = {}

    def detail(self, item: str, **fields: Any) -> None:
        """Add fields to one question's entry in OUT/items.jsonl (e.g. reference=..., rating=...)."""
        self.items.setdefault(item, {"id": item}).update(fields)

    # -- the files -------------------------------------------------------------------------------------------------
    def eval_data(self) -> dict[str, Any]:
        """The questions asked, as a count and a digest of their ids and image bytes (not their wording: a prompt
        style or SteerLM values are the method's choice, the data stays the same)."""
        asked = json.dumps(sorted(self.asked.items())).encode()
        return {"questions": len(self.asked), "sha256": hashlib.sha256(asked).hexdigest()}

    def data(self) -> Path:
        """The benchmark's files: `data` as given, or the folder the benchmark built (`use_data`)."""
        if self.data_folder is None:
            raise VlprefError(f"{self.config.benchmark}: no data folder")
        return self.data_folder

    def use_data(self, folder: Path) -> None:
        """Read the questions and their images from `folder`, which the benchmark built itself (the world's split);
        the viewer then serves the images from there."""
        self.data_folder = Path(folder).expanduser().absolute()

    def images_root(self, default: str = "images") -> Path:
        """The images folder: `images` if given, else DATA/<default> when it exists, else DATA."""
        if self.config.images:
            return Path(self.config.images).expanduser().absolute()
        folder = self.data() / default
        return folder if folder.is_dir() else self.data()

    def max_new_tokens(self, default: int) -> int:
        return self.config.max_new_tokens or default

    def limited(self, items: list) -> list:
        return items[: self.config.limit] if self.config.limit else items

    # -- the model -------------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from vlpref.models.fingerprint import model_fingerprint
            from vlpref.models.names import resolve_model

            self._fingerprint = model_fingerprint(resolve_model(self.config.model), self.config.revision,
                                                  self.config.dtype)
        return self._fingerprint

    def vlm(self):
        if self._vlm is None:
            import torch

            from vlpref.models.names import resolve_model
            from vlpref.models.vlm import VLM

            device = self.config.device or ("cuda" if torch.cuda.is_available() else None)
            self.log(f"loading {self.config.model} ({self.config.dtype}, {device or 'cpu'})")
            self._vlm = VLM.load(resolve_model(self.config.model), dtype=self.config.dtype, device=device,
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

    def answers(self, questions: list[Question], default_batch_size: int = 8) -> list[str]:
        """The model's answer to each question, generated in batches of `batch_size` (else `default_batch_size`);
        each answer is journalled the moment its batch finishes, so only unanswered questions reach the model."""
        from vlpref.models.vlm import Chat

        # Images are read only from inside the data folder or the images folder: a question file naming
        # '../../somewhere' (a tampered download) is refused, as dataset records are (vlpref.data.images). The
        # check is on the path as written, so folders the user symlinked into DATA still work.
        roots = ([self.data_folder] if self.data_folder else []) + ([self.images_root()] if self.config.images else [])
        for question in questions:
            for path in question.images:
                if not any(inside(path, root) for root in roots):
                    raise VlprefError(f"{question.source}: question {question.id}: image {path} is outside the "
                                      f"data folder{' and the images folder' if self.config.images else ''}")
            missing = [p for p in question.images if not p.is_file()]
            if missing:
                raise VlprefError(f"{question.source}: question {question.id}: image file not found: {missing[0]}")
        # The same request twice (POPE's popular and adversarial splits share most questions) is generated once.
        self.asked.update((q.id, [self._digest(p) for p in q.images]) for q in questions)
        keys = [content_key("answer", self.fingerprint(), self.config.dtype, [t.model_dump() for t in q.turns],
                            [self._digest(p) for p in q.images], q.decoding.model_dump()) for q in questions]
        size = self.config.batch_size or default_batch_size
        unique, asked = len(set(keys)), []

        def generate(pending: list[int], landed: Callable) -> None:
            asked.extend(pending)
            began = time.monotonic()
            for start in range(0, len(pending), size):
                batch = pending[start : start + size]
                chats = [Chat(questions[i].turns, self._load_images(questions[i])) for i in batch]
                generations = self.vlm().generate(chats, [questions[i].decoding for i in batch], size)
                for j, generation in zip(range(start, start + len(batch)), generations, strict=True):
                    landed(j, generation)
                self.counts["answers_generated"] += len(batch)
                self.log(progress(start + len(batch), len(pending), time.monotonic() - began,
                                  f"{unique - len(pending)} from the journal"))

        done = run_journalled(self.journal, keys, [q.id for q in questions], generate, self.out, field="question",
                              encode=lambda g: {"text": g.text, "finish_reason": g.finish_reason,
                                                "tokens": len(g.token_ids)})
        self.counts["answers_cached"] += unique - len(asked)
        texts = [value["text"] for value in done.values]
        for question, text in zip(questions, texts, strict=True):
            turn = question.turns[-1].text.replace("<image>", "").strip()
            self.detail(question.id, prompt=turn, images=[str(p) for p in question.images], answer=text)
        return texts

    # -- the judge -------------------------------------------------------------------------------------------------
    def _judge_complete(self):
        if self._complete is None:
            from vlpref.models.names import resolve_model
            from vlpref.models.remote import endpoint_complete, local_complete

            judge = self.config.judge
            self._complete = (endpoint_complete(judge.endpoint) if judge.backend == "openai"
                              else local_complete(resolve_model(judge.model), self.config.batch_size or 8))
        return self._complete

    def _judge_identity(self) -> str:
        """The judge in cache keys: the endpoint and model name, or a local model's fingerprint (a model retrained
        into the same folder is another judge)."""
        judge = self.config.judge
        if judge.backend == "openai":
            return judge.judge_id()
        from vlpref.models.fingerprint import model_fingerprint
        from vlpref.models.names import resolve_model

        return f"{judge.model}:{model_fingerprint(resolve_model(judge.model), None, 'float32')}"

    def judge(self, requests: list[JudgeRequest]) -> list[str]:
        """The judge's reply to each request. Replies are journalled as they land; a request that still fails after
        the client's retries is journalled as failed and, once all have been tried, the run stops naming them."""
        judge_id = self.config.judge.judge_id()
        # identical requests (the same answer to the same question) are sent once
        keys = [content_key("judge", self._judge_identity(), r.messages, r.decoding.model_dump()) for r in requests]
        unique, asked = len(set(keys)), []

        def ask(pending: list[int], landed: Callable) -> None:
            asked.extend(pending)
            self.log(f"judging {len(pending)} ({unique - len(pending)} from the journal) with {judge_id}")
            self._judge_complete()([requests[i].messages for i in pending], [requests[i].decoding for i in pending],
                                   None, landed)

        done = run_journalled(self.journal, keys, [r.id for r in requests], ask, self.out, field="request",
                              encode=lambda completion: completion.text)
        self.counts["judge_cached"] += unique - len(asked)
        self.counts["judge_calls"] += len(asked) - len(done.failed)
        done.raise_failures("judge calls", "the answers and the other judge replies are journalled; ")
        for request, reply in zip(requests, done.values, strict=True):
            self.detail(request.item or request.id, judge=reply)
        return done.values

    def judge_prompt_file(self) -> Path | None:
        prompt = self.config.judge.prompt if self.config.judge else None
        if prompt is None:
            return None
        path = Path(prompt).expanduser()
        if not path.is_file():
            raise VlprefError(f"judge.prompt: {path} does not exist")
        return path


def benchmark_function(benchmark: str) -> Callable[[Session], dict]:
    """The function `BENCHMARKS` names for `benchmark` (imported now: the benchmark modules import this one)."""
    module, _, function = BENCHMARKS[benchmark].function.partition(":")
    return getattr(importlib.import_module(module), function)


# What `evaluate` adds to a benchmark's own results: which run it was, where its images are, what it called.
RUN_KEYS = ("benchmark", "model", "data_folder", "images_folder", "judge", "calls", "limit", "eval_data")


def evaluate(config: EvalConfig, out: str | Path, log=print, vlm=None) -> dict:
    """Run one benchmark; writes OUT/results.json (+ .md, .png), OUT/items.jsonl, the answers and judge outputs in
    the official layouts, and returns the results. `vlm`: a model already loaded, used instead of loading
    `config.model` (its answers are journalled under the fingerprint of `config.model`)."""
    from vlpref.evaluation.report import write_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_failures(out)
    session = Session(config, out, log, vlm)
    try:
        results = benchmark_function(config.benchmark)(session)
    finally:
        session.journal.close()
    # the per-item view of `vlpref view`, in question order; always this run's
    write_jsonl(out / "items.jsonl", list(session.items.values()))
    results = {"benchmark": config.benchmark, "model": config.model, **results}
    # where the items' images live: the only folders `vlpref view` serves them from
    results["data_folder"] = str(session.data_folder) if session.data_folder else None
    results["images_folder"] = str(Path(config.images).expanduser().absolute()) if config.images else None
    results.update(judge=config.judge.judge_id() if config.judge else None, calls=session.counts, limit=config.limit,
                   eval_data=session.eval_data())
    write_run(results, out, f"{config.benchmark}: {config.model}")
    return results
