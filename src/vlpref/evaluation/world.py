"""The shapes world's benchmarks through the evaluation runner (no data to download: the scenes are generated).

    vlpref eval --benchmark world --model world:world-base --out runs/eval/world
    vlpref eval world --model runs/povid/model --out runs/eval/povid      # the same, with world defaults

    >>> metrics = evaluate_world("runs/povid/model", "runs/world-eval")  # from Python (the demo); nothing kept

DATA, when given, is a world eval split (`vlpref world generate --split eval --tasks describe,pope --out DIR`);
otherwise one of `world_images` scenes is built into OUT/eval-split (descriptions, yes/no questions and short
attribute / count / position questions; scene seeds disjoint from the training splits). Of a scene's short questions
one is asked, drawn by its scene id (`short_questions`): MM-Vet and LLaVA-Bench, where the papers report
helpfulness, ask open questions, and a description alone rates only one kind of answer. Greedy answers, at most 64
new tokens for a description, 12 for a short answer and 4 for a yes/no question, journalled like every benchmark's,
so a rerun makes no model call. `steer` asks a SteerLM model for the given attribute values, in every question or
per question kind (`steer_targets`). Results (`vlpref.world.metrics.world_metrics`): world-POPE accuracy/F1/yes-ratio
per split (random, popular, adversarial), CHAIR_s and CHAIR_i over descriptions, attribute / count / position /
relation hallucination, coverage, the oracle judge's helpfulness and faithfulness (1-5) of the descriptions and its
helpfulness of the short answers (`qa_helpfulness`). OUT/items.jsonl holds each question for `vlpref view`: a
description's hallucinated and missed facts and ratings, a yes/no answer's verdict, a short answer's rating. This is
the one module under `vlpref.evaluation` that imports `vlpref.world`.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import tempfile
from pathlib import Path

from vlpref.data.schema import Prompt
from vlpref.errors import VlprefError
from vlpref.evaluation.run import RUN_KEYS, EvalConfig, Question, Session, evaluate, greedy

DESCRIBE_TOKENS = 64  # `max_new_tokens` overrides it
POPE_TOKENS = 4  # a yes/no answer needs one word; not changed by `max_new_tokens`
BATCH_SIZE = 128  # the world model is tiny; `batch_size` overrides it


SHORT_TOKENS = 12  # "there are three circles." and the like
SPLIT_TASKS = ("describe", "pope", "qa")  # the task groups of the world's eval split (`vlpref.world.tasks`)
SHORT = ("color", "size", "position", "count")  # the short questions' kinds (`meta["task"]`)
TASKS = ("describe", "pope", *SHORT)  # every question kind it asks


def steer_targets(steer: str | None, option: str = "steer") -> dict[str, dict[str, float]] | None:
    """SteerLM's targets per task ('*': every task), checked (every HelpSteer attribute given):

        'Helpfulness:4,...'                              -> {'*': {...}}
        'describe=Helpfulness:4,...;pope=Helpfulness:3,...' -> {'describe': {...}, 'pope': {...}}
    """
    if not steer:
        return None
    from vlpref.data.steerlm import check_targets, parse_targets

    parts = [p.strip() for p in steer.split(";") if p.strip()]
    by_task = {}
    try:
        for part in parts:
            task, _, values = part.rpartition("=") if "=" in part else ("*", "", part)
            task = task.strip()
            if task != "*" and task not in TASKS:
                raise ValueError(f"unknown task {task!r}; the world's evaluation asks {', '.join(TASKS)} questions")
            if task in by_task:
                raise ValueError(f"{task!r} is given twice")
            by_task[task] = parse_targets(values)
            check_targets(by_task[task])
    except ValueError as error:
        raise VlprefError(f"{option}: {error}") from None
    if "*" in by_task and len(by_task) > 1:
        raise VlprefError(f"{option}: give values for every question or per task (task=values;...), not both")
    return by_task


def steer_spec(steer: dict[str, float] | dict[str, dict[str, float]]) -> str:
    """The inverse of `steer_targets`: {attribute: value} (every task) or {task: {attribute: value}} -> its string."""
    def values(targets: dict[str, float]) -> str:
        return ",".join(f"{k}:{v:g}" for k, v in targets.items())

    if all(isinstance(v, dict) for v in steer.values()):
        return ";".join(f"{task}={values(t)}" if task != "*" else values(t) for task, t in steer.items())
    return values(steer)


def _split(session: Session) -> Path:
    """The eval split: `data` as given, else one built into OUT/eval-split (rebuilt when `world_images` changes: a
    marker records what it was built with)."""
    config = session.config
    if config.data:
        data = session.data()
        if not (data / "records.jsonl").is_file():
            raise VlprefError(f"world: {data} is not a world split (no records.jsonl); leave data out to build one")
        return data
    from vlpref.world.tasks import build_split

    data, marker = session.out / "eval-split", session.out / "eval-split.json"
    built = json.loads(marker.read_text()) if marker.is_file() else None
    settings = {"images": config.world_images, "tasks": list(SPLIT_TASKS)}
    if built != settings or not (data / "records.jsonl").is_file():
        if data.is_dir():
            shutil.rmtree(data)
        build_split(data, "eval", config.world_images, tasks=SPLIT_TASKS)
        marker.write_text(json.dumps(settings))
    session.use_data(data)
    return session.data()


def short_questions(prompts: list[Prompt]) -> list[Prompt]:
    """One attribute, count or position question per scene, drawn by the scene's id (so the same on every run and
    for every model), in the split's order; a scene without one asks none."""
    by_scene: dict[str, list[Prompt]] = {}
    for p in prompts:
        if p.meta["task"] in SHORT:
            by_scene.setdefault(p.meta["scene"]["id"], []).append(p)
    return [random.Random(f"short:{scene}").choice(asked) for scene, asked in by_scene.items()]


def _questions(prompts: list[Prompt], data: Path, max_new_tokens: int, steer: dict[str, dict[str, float]]
               ) -> list[Question]:
    """Each prompt as a greedy question, asking a SteerLM model for its kind's values (`steer_targets`) if given."""
    from vlpref.data.steerlm import steered

    def query(p: Prompt):
        targets = steer.get(p.meta["task"], steer.get("*"))
        return steered(p.query, targets) if targets else p.query

    return [Question(p.id, query(p), [data / image for image in p.images], greedy(max_new_tokens),
                     source=str(data / "records.jsonl")) for p in prompts]


def run(session: Session) -> dict:
    from vlpref.data.store import read_records
    from vlpref.world.metrics import world_metrics

    data = _split(session)
    prompts: list[Prompt] = read_records(data)
    steer = steer_targets(session.config.steer) or {}
    describe = [p for p in prompts if p.meta["task"] == "describe"]
    pope = [p for p in prompts if p.meta["task"] == "pope"]
    short = short_questions(prompts)  # none in a split built without the qa group
    # Each kind is asked apart, so that a batch holds answers of one length (as before the runner).
    texts = session.answers(_questions(describe, data, session.max_new_tokens(DESCRIBE_TOKENS), steer), BATCH_SIZE)
    answers = session.answers(_questions(pope, data, POPE_TOKENS, steer), BATCH_SIZE)
    replies = session.answers(_questions(short, data, SHORT_TOKENS, steer), BATCH_SIZE) if short else []
    results, items = world_metrics(describe, texts, pope, answers, oracle=True, questions=short, replies=replies)
    for item, fields in items.items():
        session.detail(item, **fields)
    return results


def evaluate_world(model, data: str | Path, out: str | Path | None = None, *, batch_size: int = 32,
                   max_new_tokens: int = DESCRIBE_TOKENS,
                   steer: dict[str, float] | dict[str, dict[str, float]] | None = None,
                   oracle: bool = False, device: str | None = None, log=None) -> dict[str, float]:
    """The world benchmarks of `model` on the world eval split `data`, run by the evaluation runner: the metrics
    alone (no run bookkeeping), with the oracle's `helpfulness` and `faithfulness` only when `oracle`.

    `model`: a model folder, hub id or world:<name> (loaded on `device`: default cuda when available), or a `VLM`
    already loaded (used as it is, on its own device; its answers are keyed by the folder it was loaded from, so
    pass one changed in memory only with `out` None). `out`: a run folder (journal, results.json, items.jsonl for
    `vlpref view`; a second call makes no model call); None: a temporary one, every answer generated afresh.
    `steer`: the SteerLM attribute values to ask for in every question, e.g. `vlpref.data.steerlm.TOP`, or per task
    ({"describe": {...}, "pope": {...}}, e.g. `vlpref.data.steerlm.in_range_targets`).
    """
    from vlpref.world.metrics import ORACLE_KEYS

    settings = {"benchmark": "world", "data": str(data), "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                "steer": steer_spec(steer) if steer else None}
    vlm = None
    if isinstance(model, str | Path):
        settings.update(model=str(model), device=device)
    else:  # a loaded VLM: keyed by the folder it came from and its dtype
        vlm = model
        settings.update(model=vlm.name, dtype=str(vlm.model.dtype).removeprefix("torch."))
    config = EvalConfig(**settings)
    with contextlib.ExitStack() as stack:
        folder = out if out is not None else stack.enter_context(tempfile.TemporaryDirectory())
        results = evaluate(config, folder, log=log or (lambda *_: None), vlm=vlm)
    left_out = set(RUN_KEYS) | (set() if oracle else set(ORACLE_KEYS))
    return {k: v for k, v in results.items() if k not in left_out}
