"""Each of the five strategies end to end from the CLI, offline on the shapes world (small sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import vlpref
from vlpref.data.schema import PreferencePair
from vlpref.data.store import read_meta, read_records
from vlpref.world.tasks import build_split


def run(*args: str) -> str:
    out = vlpref(*args)
    assert out.returncode == 0, out.stderr
    return out.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    build_split(root / "prompts", "prefs", 2, tasks=("describe", "pope", "qa"))
    recipe = root / "sample.yaml"
    recipe.write_text("pool:\n"
                      "  - {model: 'world:world-early', n: 2, decoding: {temperature: 1.0, max_new_tokens: 24}}\n"
                      "  - {model: 'world:world-base', n: 1, decoding: {temperature: 0.7, max_new_tokens: 24}}\n")
    run("sample", "--config", str(recipe), "--prompts", str(root / "prompts"), "--out", str(root / "cands"))
    return {"root": root, "prompts": root / "prompts", "cands": root / "cands"}


def pairs_of(folder: Path) -> list[PreferencePair]:
    records = read_records(folder, check_image_files=True)  # every image a pair names is in the folder
    assert records and all(isinstance(p, PreferencePair) for p in records)
    return records


def test_vlfeedback(world):
    root = world["root"]
    log = run("judge", "--candidates", str(world["cands"]), "--out", str(root / "vf"))
    assert "parse status: ok" in log
    run("pairs", "--strategy", "vlfeedback", "--annotations", str(root / "vf"), "--out", str(root / "vf-pairs"))
    pairs = pairs_of(root / "vf-pairs")
    for p in pairs:
        mean = lambda s: sum(s.values()) / len(s)  # noqa: E731
        assert mean(p.chosen_scores) > mean(p.rejected_scores)
    assert read_meta(root / "vf-pairs")["config"]["strategy"] == "vlfeedback"
    skipped = [json.loads(line) for line in (root / "vf-pairs" / "skipped.jsonl").read_text().splitlines()]
    assert all(s["reason"].startswith("tie") for s in skipped)


def test_helpsteer_with_sft_sets(world):
    root = world["root"]
    run("judge", "--candidates", str(world["cands"]), "--rubric", "helpsteer", "--out", str(root / "hs"))
    run("pairs", "--strategy", "helpsteer", "--annotations", str(root / "hs"), "--out", str(root / "hs-pairs"))
    pairs = pairs_of(root / "hs-pairs")
    assert all(p.chosen_scores["S"] - p.rejected_scores["S"] >= 2 for p in pairs)
    assert len({p.prompt_id for p in pairs}) == len(pairs)  # one pair per prompt
    best = read_records(root / "hs-pairs" / "rejection-sampling")
    steer = read_records(root / "hs-pairs" / "steerlm")
    assert len(best) == len(read_records(world["prompts"]))
    assert len(steer) == 3 * len(best) and "Likert scale:\nHelpfulness:" in steer[0].turns[0].text


def test_seva(world):
    root = world["root"]
    run("sample", "--prompts", str(world["prompts"]), "--model", "world:world-base", "--n", "1",
        "--augment", "diffusion", "--out", str(root / "seva-cands"))
    log = run("pairs", "--strategy", "seva", "--candidates", str(root / "seva-cands"), "--out", str(root / "seva"))
    pairs = pairs_of(root / "seva")
    assert all(p.chosen != p.rejected and p.rejected_images is None for p in pairs)
    assert "identical answers" in log or len(pairs) == len(read_records(world["prompts"]))


def test_povid(world):
    root = world["root"]
    run("pairs", "--strategy", "povid", "--prompts", str(world["prompts"]), "--out", str(root / "povid"))
    pairs = pairs_of(root / "povid")
    prompts = {p.id: p for p in read_records(world["prompts"])}
    assert all(p.chosen == prompts[p.prompt_id].reference != p.rejected for p in pairs)
    kinds = {p.provenance["injection"] for p in pairs}
    assert kinds == {"object", "attribute", "relation", "flip"}


def test_image_contrast(world):
    root = world["root"]
    run("pairs", "--strategy", "image-contrast", "--prompts", str(world["prompts"]), "--out", str(root / "ic"))
    pairs = pairs_of(root / "ic")
    assert all(p.chosen == p.rejected and p.rejected_images and p.rejected_images != p.images for p in pairs)


@pytest.mark.parametrize("method", ["vlfeedback", "li_lin_pei", "seva", "povid"])
def test_world_recipes_run_offline(method, tmp_path):
    """Each paper's offline data recipe, shrunk to one scene, makes pairs through `vlpref prefs`."""
    from vlpref.config import load_yaml
    from vlpref.prefs import DataRecipe

    recipe = load_yaml(DataRecipe, Path("recipes") / method / "data_world.yaml").model_dump()
    if recipe["pairs"]["strategy"] in ("povid", "image-contrast"):  # the strategies that read world prompts
        recipe["pairs"]["world_images"] = 1
    if recipe.get("sample"):
        recipe["sample"]["world_images"] = 1
        recipe["sample"]["prompts"] = None
        for member in recipe["sample"]["pool"]:
            member["decoding"]["max_new_tokens"] = 24
    shrunk = tmp_path / "recipe.yaml"
    shrunk.write_text(json.dumps(recipe))  # JSON is YAML
    run("prefs", "--config", str(shrunk), "--out", str(tmp_path / "out"))
    assert pairs_of(tmp_path / "out" / "pairs")
