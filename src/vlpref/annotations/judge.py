"""`vlpref judge`: rate every prompt's candidates on a rubric; resumable, nothing dropped.

    vlpref judge --candidates runs/cands --out runs/judged                  # the world's oracle, VLFeedback rubric
    vlpref judge --candidates runs/cands --out runs/judged --rubric helpsteer

    >>> from vlpref.annotations.judge import JudgeConfig, judge
    >>> annotations = judge(JudgeConfig(), "runs/cands", "runs/judged")

A judge backend is anything with `annotate(prompt, candidates, rubric) -> list[Annotation]`: all of a prompt's
responses are rated in one call, as VLFeedback's GPT-4V annotation does. The world's oracle
(`vlpref.world.judge.OracleJudge`, scores from the scene graph) is the offline default.

Each prompt's call is journalled (`vlpref.journal`) under a hash of the judge, the rubric, the prompt and its
candidates' texts, so a killed run started again never repeats a finished call. An annotation whose ratings did not
parse is kept (with the raw text and `parse_status`) and counted in the report: the pairs stage decides what to do
with it, and says so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlpref.config import StrictModel
from vlpref.data.schema import Annotation, Candidate, Prompt
from vlpref.data.store import read_meta, read_records, write_records
from vlpref.errors import VlprefError
from vlpref.journal import Journal, content_key


class JudgeConfig(StrictModel):
    recipe: Literal["judge"] = "judge"
    backend: Literal["oracle"] = Field(default="oracle", description="oracle: the shapes world's scene-graph judge")
    rubric: Literal["vlfeedback", "helpsteer"] = "vlfeedback"
    prompts: str | None = Field(default=None, description="prompts folder; default: the one the candidates name")


def make_judge(config: JudgeConfig):
    """The judge backend and its id (which goes into every annotation and journal key)."""
    from vlpref.world.judge import OracleJudge

    return OracleJudge(), "world-oracle"


def prompts_of(candidates_dir: Path, given: str | None) -> Path:
    """The prompts folder a candidates folder was sampled from (its meta.json says), unless one is given."""
    if given is not None:
        return Path(given)
    named = read_meta(candidates_dir).get("prompts")
    if not named:
        raise VlprefError(f"{candidates_dir}/meta.json names no prompts folder; pass --prompts")
    return Path(named)


def judge(config: JudgeConfig, candidates_dir: str | Path, out: str | Path, log=print) -> list[Annotation]:
    candidates_dir, out = Path(candidates_dir), Path(out)
    prompts: list[Prompt] = read_records(prompts_of(candidates_dir, config.prompts))
    candidates: list[Candidate] = read_records(candidates_dir)
    by_prompt: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_prompt.setdefault(c.prompt_id, []).append(c)
    known = {p.id for p in prompts}
    orphans = sorted(set(by_prompt) - known)
    if orphans:
        raise VlprefError(f"{candidates_dir}: candidates name prompts the prompts folder lacks, e.g. {orphans[0]!r}")
    backend, judge_id = make_judge(config)
    journal = Journal(out / "journal.sqlite")
    annotations: list[Annotation] = []
    calls = 0
    for prompt in prompts:
        mine = by_prompt.get(prompt.id, [])
        if not mine:
            continue
        key = content_key("judge", judge_id, config.rubric, prompt.model_dump(),
                          [(c.id, c.text, c.images) for c in mine])
        done = journal.get(key)
        if done is None:
            done = [a.model_dump() for a in backend.annotate(prompt, mine, rubric=config.rubric)]
            journal.put(key, done)
            calls += 1
        annotations.extend(Annotation.model_validate(a) for a in done)
    status = Counter(a.parse_status for a in annotations)
    log(f"judge: {len(annotations)} annotations ({calls} judge calls this run); parse status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(status.items())))
    write_records(out, "annotations", annotations, candidates=str(candidates_dir.resolve()),
                  prompts=str(prompts_of(candidates_dir, config.prompts).resolve()), judge=judge_id,
                  config=config.model_dump(), config_hash=content_key(config.model_dump()),
                  parse_status=dict(status))
    journal.close()
    return annotations
