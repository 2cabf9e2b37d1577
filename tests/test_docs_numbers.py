"""The numbers docs/preference-data.md gives for the world data recipes are what the recipes make today.

The docs' table was stale once (it said 246 SeVa pairs after a change made 115); this reruns the four world twins
(about 40 s on 2 cores) and reads the counts back out of the table, so a change of recipe or pair rule that moves
them fails here until the docs say the new figure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vlpref.config import load_yaml
from vlpref.prefs import DataRecipe, run_recipe

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "preference-data.md"


def doc_row(recipe: str) -> str:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith(f"| `{recipe}/data_world.yaml` |")]
    assert len(rows) == 1, f"docs/preference-data.md has {len(rows)} rows for {recipe}/data_world.yaml"
    return rows[0].split("|")[3]


def number(text: str, pattern: str) -> int:
    found = re.search(r"([\d,]+) " + pattern, text)
    assert found, f"docs/preference-data.md: no '<n> {pattern}' in {text!r}"
    return int(found.group(1).replace(",", ""))


def lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0


@pytest.mark.parametrize("recipe, skipped", [("vlfeedback", "ties dropped"), ("li_lin_pei", "prompts skipped"),
                                             ("seva", "identical answers dropped"), ("povid", None)])
def test_docs_counts_match_the_world_recipes(recipe, skipped, tmp_path):
    run_recipe(load_yaml(DataRecipe, ROOT / "recipes" / recipe / "data_world.yaml"), tmp_path, log=lambda *a: None)
    row, pairs = doc_row(recipe), tmp_path / "pairs"
    assert lines(pairs / "records.jsonl") == number(row, "pairs")
    if skipped:
        assert lines(pairs / "skipped.jsonl") == number(row, skipped)
    if recipe == "li_lin_pei":
        assert lines(pairs / "rejection-sampling" / "records.jsonl") == number(row, "rejection-sampling")
        assert lines(pairs / "steerlm" / "records.jsonl") == number(row, "SteerLM records")
