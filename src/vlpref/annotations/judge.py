"""`vlpref judge`: rate every prompt's candidates on a rubric; resumable, nothing dropped.

    vlpref judge --candidates runs/cands --out runs/judged                  # the world's oracle, VLFeedback rubric
    vlpref judge --candidates runs/cands --out runs/judged --rubric helpsteer
    vlpref judge --config recipes/vlfeedback/data.yaml --candidates runs/cands --out runs/judged   # GPT-4o judge

    >>> from vlpref.annotations.judge import JudgeConfig, judge
    >>> annotations = judge(JudgeConfig(backend="openai", endpoint=...), "runs/cands", "runs/judged")

All of a prompt's responses are rated in one call, with the image shown to the judge, as VLFeedback's GPT-4V
annotation does. Backends:
- `oracle`: a judge that needs no model call, given by the caller (`vlpref judge` gives the shapes world's
  scene-graph judge, `vlpref.world.judge.OracleJudge`), the offline default;
- `openai`: any OpenAI-compatible endpoint (GPT-4o, Gemini's compatible API, a vLLM-served VLM, `vlpref serve`),
  concurrent requests;
- `local`: a transformers VLM in this process.
The chat backends send the rubric's prompt (`vlpref.annotations.rubric`) and parse the answer. With `structured`
on (or `auto` and the endpoint accepting `response_format`), the judge answers JSON against a schema. A response
whose ratings do not all parse is asked again (`parse_retries`, new seed); what still fails to parse is kept with
`parse_status` "partial"/"failed" and its raw text, and counted. Endpoint failures (after the client's retries) are
journalled with their reason and retried by the next run; the command then exits non-zero naming them.

Each prompt's result is journalled (`vlpref.journal`) under a hash of the judge, the rubric, the prompt and its
candidates' texts, so a killed run started again never repeats a finished call. The report gives tokens used and
the estimated cost when the endpoint's prices are configured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field, model_validator

from vlpref.annotations.rubric import load_rubric
from vlpref.config import StrictModel
from vlpref.data.images import record_image_digests
from vlpref.data.schema import Annotation, Candidate, DecodingParams, Prompt, Turn
from vlpref.data.store import read_meta, read_records, write_records
from vlpref.errors import ConfigError, VlprefError
from vlpref.journal import Journal, content_key, run_journalled
from vlpref.models.remote import Completion, Failure, RemoteEndpoint, check_backend, endpoint_complete, local_complete


class JudgeConfig(StrictModel):
    recipe: Literal["judge"] = "judge"
    backend: Literal["oracle", "openai", "local"] = Field(
        default="oracle", description="oracle: the shapes world's scene-graph judge; openai: an OpenAI-compatible "
        "endpoint; local: a transformers VLM")
    rubric: str = Field(default="vlfeedback", description="vlfeedback, helpsteer, or a rubric YAML file")
    prompts: str | None = Field(default=None, description="prompts folder; default: the one the candidates name")
    endpoint: RemoteEndpoint | None = Field(default=None, description="backend openai: the judge endpoint")
    model: str | None = Field(default=None, description="backend local: hub id, path or world:<name>")
    decoding: DecodingParams = Field(default_factory=lambda: DecodingParams(temperature=0.0, max_new_tokens=1024))
    structured: Literal["auto", "on", "off"] = Field(
        default="auto", description="ask for JSON against a schema (auto: when the endpoint accepts it)")
    parse_retries: int = Field(default=2, ge=0, description="new attempts for a response that did not parse")
    retry_temperature: float = Field(default=0.7, ge=0, description="temperature of those attempts, at least")

    @model_validator(mode="after")
    def _backend_settings(self) -> JudgeConfig:
        check_backend(self.backend, self.endpoint, self.model)
        if self.backend == "oracle" and self.rubric not in ("vlfeedback", "helpsteer"):
            raise ValueError(f"rubric: the oracle judge rates vlfeedback or helpsteer, not {self.rubric!r}")
        return self

    def judge_id(self) -> str:
        """Who judged, for annotations and journal keys (never an API key)."""
        if self.backend == "openai":
            return f"{self.endpoint.model}@{self.endpoint.base_url}"
        return self.model if self.backend == "local" else "world-oracle"


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def cost(self, prices: tuple[float, float] | None) -> float | None:
        if prices is None:
            return None
        return (self.prompt_tokens * prices[0] + self.completion_tokens * prices[1]) / 1e6


class ChatJudge:
    """A chat model as judge: builds the rubric's prompt with the image, parses the ratings, retries what did not
    parse. `complete(messages_list, params_list, extra) -> [Completion | Failure]` is the model call."""

    def __init__(self, config: JudgeConfig, complete, judge_id: str, supports_schema: bool, memo=None):
        from vlpref.annotations.rubric import load_rubric

        self.config, self.complete, self.judge_id, self.memo = config, complete, judge_id, memo
        self.rubric = load_rubric(config.rubric)
        self.structured = config.structured == "on" or (config.structured == "auto" and supports_schema)
        self.usage = Usage()

    def _messages(self, prompt: Prompt, candidates: list[Candidate], root: Path) -> list[dict]:
        from vlpref.annotations.rubric import judge_prompt
        from vlpref.data.images import load_record_images
        from vlpref.models.chat_api import to_openai_messages

        instruction = "\n".join(t.text.replace("<image>", "").strip() for t in prompt.query if t.role == "user")
        text = judge_prompt(self.rubric, instruction, [c.text for c in candidates])
        if self.structured:
            text += "\nAnswer with JSON only, matching the given schema.\n"
        images = load_record_images(root, prompt)
        return to_openai_messages([Turn(role="user", text="<image>" * len(images) + "\n" + text)], images)

    def _extra(self, n: int) -> dict:
        if not self.structured:
            return {}
        from vlpref.annotations.rubric import ratings_schema

        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": f"{self.rubric.name}_ratings", "schema": ratings_schema(self.rubric, n), "strict": True}}}

    def _annotations(self, candidates: list[Candidate], raw: str) -> list[Annotation]:
        from vlpref.annotations.rubric import parse_json_ratings, parse_ratings

        parse = parse_json_ratings if self.structured else parse_ratings
        scores, status = parse(self.rubric, raw, len(candidates))
        return [Annotation(candidate_id=c.id, prompt_id=c.prompt_id, judge_id=self.judge_id, rubric=self.rubric.name,
                           aspects=s, raw=raw, parse_status=status,
                           error=None if status == "ok" else f"{status} parse of the judge's answer")
                for c, s in zip(candidates, scores, strict=True)]

    def _round(self, items, indices: list[int], attempt: int, decoding: DecodingParams, last: bool, root: Path,
               on_done, schema: bool) -> tuple[list[int], list[int]]:
        """One request per item in `indices`; returns (items to ask again, items whose schema was refused).

        An attempt that did not parse is remembered (`memo`), so a run killed during the retries and started again
        reuses the attempts already made instead of paying for them twice."""
        retry: list[int] = []
        refused: list[int] = []

        def process(i: int, result, fresh: bool) -> None:
            if isinstance(result, Failure):
                if schema and self.config.structured == "auto" and "response_format" in result.reason:
                    refused.append(i)
                else:
                    on_done(i, result)
                return
            if fresh:
                self.usage.calls += 1
                self.usage.prompt_tokens += result.prompt_tokens
                self.usage.completion_tokens += result.completion_tokens
            annotations = self._annotations(items[i][1], result.text)
            if annotations[0].parse_status == "ok" or last:
                on_done(i, annotations)
            else:
                if fresh and self.memo is not None:
                    self.memo.put(i, attempt, schema, result.text)
                retry.append(i)

        send = []
        for i in indices:
            remembered = self.memo.get(i, attempt, schema) if self.memo is not None else None
            if remembered is None:
                send.append(i)
            else:
                process(i, Completion(remembered, "stop"), fresh=False)

        def make(i):  # messages are built when the request is sent, not all up front
            return lambda: self._messages(*items[i], root)

        extras = [self._extra(len(items[i][1])) if schema else {} for i in send]
        self.complete([make(i) for i in send], [decoding] * len(send), extras,
                      lambda j, result: process(send[j], result, fresh=True))
        return sorted(retry), sorted(refused)

    def annotate_many(self, items: list[tuple[Prompt, list[Candidate]]], root: Path, on_done) -> None:
        """Judge every (prompt, candidates); `on_done(i, annotations | Failure)` once per item, the moment its
        result is final (so the caller can journal it before the next one lands)."""
        pending = list(range(len(items)))
        for attempt in range(self.config.parse_retries + 1):
            last = attempt == self.config.parse_retries
            # A retry of an unparsed answer samples (a greedy judge would repeat itself word for word).
            temperature = self.config.decoding.temperature if attempt == 0 else max(
                self.config.decoding.temperature, self.config.retry_temperature)
            decoding = self.config.decoding.model_copy(
                update={"temperature": temperature, "seed": (self.config.decoding.seed or 0) + attempt})
            retry, refused = self._round(items, pending, attempt, decoding, last, root, on_done, self.structured)
            if refused:  # the endpoint takes no schema: the rubric's text format from now on
                self.structured = False
                again, _ = self._round(items, refused, attempt, decoding, last, root, on_done, False)
                retry = sorted(retry + again)
            pending = retry
            if not pending:
                break


@dataclass
class _AttemptMemo:
    """Unparsed attempts, kept in the journal under their item's key + attempt, so retries resume too."""

    journal: Journal
    keys: list[str]

    def _key(self, i: int, attempt: int, schema: bool) -> str:
        return content_key(self.keys[i], "attempt", attempt, schema)

    def get(self, i: int, attempt: int, schema: bool) -> str | None:
        return self.journal.get(self._key(i, attempt, schema))

    def put(self, i: int, attempt: int, schema: bool, text: str) -> None:
        self.journal.put(self._key(i, attempt, schema), text)


def prompts_of(candidates_dir: Path, given: str | None) -> Path:
    """The prompts folder a candidates folder was sampled from (its meta.json says), unless one is given."""
    if given is not None:
        return Path(given)
    named = read_meta(candidates_dir, "candidates").get("prompts")
    if not named:
        raise VlprefError(f"{candidates_dir}/meta.json names no prompts folder; pass --prompts")
    return Path(named)


class Annotator(Protocol):
    """A judge that rates without a model call (the shapes world's oracle, `vlpref.world.judge.OracleJudge`)."""

    def annotate(self, prompt: Prompt, candidates: list[Candidate], rubric: str) -> list[Annotation]: ...


def judge(config: JudgeConfig, candidates_dir: str | Path, out: str | Path, log=print,
          oracle: Annotator | None = None) -> list[Annotation]:
    """Rate every prompt's candidates; `oracle` is the judge for backend oracle (the CLI passes the world's)."""
    candidates_dir, out = Path(candidates_dir), Path(out)
    prompts_dir = prompts_of(candidates_dir, config.prompts)
    candidates: list[Candidate] = read_records(candidates_dir, kind="candidates")
    prompts: list[Prompt] = read_records(prompts_dir, kind="prompts")
    by_prompt: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_prompt.setdefault(c.prompt_id, []).append(c)
    orphans = sorted(set(by_prompt) - {p.id for p in prompts})
    if orphans:
        raise VlprefError(f"{candidates_dir}: candidates name prompts the prompts folder lacks, e.g. {orphans[0]!r}")
    judge_id = config.judge_id()
    journal = Journal(out / "journal.sqlite")
    work = [(p, by_prompt[p.id]) for p in prompts if by_prompt.get(p.id)]
    # Everything an annotation depends on: the judge, the rubric's content (not just its name), how it is asked,
    # the prompt with its image bytes, and the candidates.
    how = [judge_id, load_rubric(config.rubric).model_dump(),
           config.model_dump(include={"decoding", "structured", "parse_retries", "retry_temperature"})]
    keys = [content_key("judge", how, p.model_dump(), record_image_digests(prompts_dir, p),
                        [(c.id, c.text, c.images) for c in mine]) for p, mine in work]
    usage = Usage()
    if config.backend == "oracle" and oracle is None:
        raise ConfigError("backend oracle: this caller gave no oracle judge (the `vlpref judge` and `vlpref prefs` "
                          "commands use the shapes world's)")

    def run(pending: list[int], landed) -> None:
        nonlocal usage
        if config.backend == "oracle":
            for j, i in enumerate(pending):
                prompt, mine = work[i]
                landed(j, oracle.annotate(prompt, mine, rubric=config.rubric))
                usage.calls += 1
            return
        complete = endpoint_complete(config.endpoint) if config.backend == "openai" else local_complete(config.model)
        chat_judge = ChatJudge(config, complete, judge_id, supports_schema=config.backend == "openai",
                               memo=_AttemptMemo(journal, [keys[i] for i in pending]))
        chat_judge.annotate_many([work[i] for i in pending], prompts_dir, landed)
        usage = chat_judge.usage

    done = run_journalled(journal, keys, [p.id for p, _ in work], run, out, field="prompt",
                          encode=lambda result: [a.model_dump() for a in result],
                          announce=lambda n, todo: log(f"judge: {n} prompts, {n - todo} already judged, "
                                                       f"{todo} to judge"))
    failed = done.failed
    annotations = [Annotation.model_validate(a) for value in done.values if value is not None for a in value]
    status = Counter(a.parse_status for a in annotations)
    cost = usage.cost(config.endpoint.price_per_million if config.endpoint else None)
    tokens = "" if config.backend == "oracle" else (
        f", {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
        + (f", about ${cost:.4f}" if cost is not None else ""))
    log(f"judge: {len(annotations)} annotations ({usage.calls} judge calls this run{tokens}); parse status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(status.items())))
    write_records(out, "annotations", annotations, candidates=str(candidates_dir.resolve()),
                  prompts=str(prompts_dir.resolve()), judge=judge_id, config=config.model_dump(),
                  config_hash=content_key(config.model_dump()), parse_status=dict(status),
                  usage={"calls": usage.calls, "prompt_tokens": usage.prompt_tokens,
                         "completion_tokens": usage.completion_tokens, "cost_usd": cost}, incomplete=len(failed))
    journal.close()
    done.raise_failures("judge call(s)")
    return annotations
