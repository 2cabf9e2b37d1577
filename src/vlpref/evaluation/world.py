"""The shapes world's benchmarks through `vlpref eval` (no data to download: the scenes are generated).

    vlpref eval --benchmark world --model world:world-base --out runs/eval/world
    vlpref eval world --model runs/povid/model --out runs/eval/povid      # the same, with world defaults

DATA, when given, is a world eval split (`vlpref world data --split eval`); otherwise one of `world_images` scenes
is built into OUT/eval-split (describe and yes/no tasks, scene seeds disjoint from the training splits). Greedy
answers; results (`vlpref.world.metrics.evaluate_world`): world-POPE accuracy/F1/yes-ratio per split (random,
popular, adversarial), CHAIR_s and CHAIR_i over descriptions, attribute / count / position / relation
hallucination, coverage, and the oracle judge's helpfulness and faithfulness (1-5). `steer` asks a SteerLM model
for the given attribute values in every question.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vlpref.errors import VlprefError
from vlpref.evaluation.run import Session


def steer_targets(steer: str | None, option: str = "steer") -> dict[str, float] | None:
    """'Helpfulness:4,...' -> the targets, checked (every HelpSteer attribute given)."""
    if not steer:
        return None
    from vlpref.data.steerlm import check_targets, parse_targets

    try:
        targets = parse_targets(steer)
        check_targets(targets)
    except ValueError as error:
        raise VlprefError(f"{option}: {error}") from None
    return targets


def run(session: Session) -> dict:
    from vlpref.world.metrics import evaluate_world
    from vlpref.world.tasks import build_split

    config = session.config
    data = Path(config.data).expanduser() if config.data else session.out / "eval-split"
    if config.data and not (data / "records.jsonl").is_file():
        raise VlprefError(f"world: {data} is not a world split (no records.jsonl); leave data out to build one")
    if not config.data:
        # the split this run builds is rebuilt when `world_images` changes (a marker records what it was built with)
        marker = session.out / "eval-split.json"
        built = json.loads(marker.read_text()) if marker.is_file() else None
        if built != {"images": config.world_images} or not (data / "records.jsonl").is_file():
            if data.is_dir():
                shutil.rmtree(data)
            build_split(data, "eval", config.world_images, tasks=("describe", "pope"))
            marker.write_text(json.dumps({"images": config.world_images}))
    return evaluate_world(session.vlm(), data, batch_size=config.batch_size or 128,
                          max_new_tokens=session.max_new_tokens(64), steer=steer_targets(config.steer), oracle=True)
