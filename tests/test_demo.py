"""`vlpref demo --quick`: every row runs through data, training and evaluation, the results have the promised
shape, and a rerun resumes instead of redoing the work."""

from __future__ import annotations

import json

from tests.test_cli import vlpref
from vlpref.demo import METRICS, ROWS


def test_quick_demo_writes_every_row_and_resumes(tmp_path):
    out = vlpref("demo", "--quick", "--out", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "POPE F1: values" in out.stdout and "data, seva:" in out.stdout  # results on stdout, progress on stderr
    assert "POPE F1" not in out.stderr and "seed 0: train" in out.stderr
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["method"] for r in results] == [r.name for r in ROWS]
    for row in results:
        assert set(METRICS) <= set(row) and all(isinstance(row[k], float) for k in METRICS)
        assert 0 <= row["chair_i"] <= 1 and 1 <= row["helpfulness"] <= 5
    assert "| SeVa |" in (tmp_path / "demo" / "results.md").read_text()
    assert all((tmp_path / "demo" / f"{name}.png").stat().st_size > 1000
               for name in ("pope_f1", "chair", "coverage", "oracle", "differences"))
    assert all(f"{k}_diff" in row for row in results[1:] for k in METRICS) and "chair_i_diff" not in results[0]
    assert "Paired difference from the base" in (tmp_path / "demo" / "results.md").read_text()
    data = json.loads((tmp_path / "demo" / "data.json").read_text())
    assert set(data) == {"0"} and set(data["0"]) == {"vlfeedback", "li_lin_pei", "seva", "povid"}
    assert all(f["pairs"] >= f["distinct_pairs"] >= 1 and f["prompts"] >= 1 for f in data["0"].values())
    assert 0 <= data["0"]["seva"]["rejected_degenerate"] <= 1
    for f in data["0"].values():
        assert f["description_pairs"] >= f["partner_rejected_only"] + f["partner_chosen_only"]
    assert data["0"]["povid"]["partner_chosen_only"] == 0  # POVID's chosen answer is the ground truth
    for row in ROWS[1:]:  # a row without a recipe evaluates another row's model and trains nothing
        trained = tmp_path / "demo" / "seed-0" / "train" / row.name / "model" / "config.json"
        assert trained.is_file() == (row.recipe is not None), row.name
    again = vlpref("demo", "--quick", "--out", str(tmp_path / "demo"))
    said = again.stdout + again.stderr  # the progress lines go to the console (stderr)
    assert again.returncode == 0 and "seed 0: evaluate" not in said and "seed 0: train" not in said
    assert "results in" in said


def test_demo_rows_are_checked():
    import pytest

    from vlpref.demo import DemoConfig

    with pytest.raises(ValueError, match="povid-stage2 starts from povid-stage1's model"):
        DemoConfig(rows=["base", "povid-stage2"])
    with pytest.raises(ValueError, match="unknown row 'dpo'"):
        DemoConfig(rows=["dpo"])


def test_a_changed_setting_redoes_what_depends_on_it(tmp_path):
    """Rerun with other training settings for one row: that row (and only that row, plus what starts from it) is
    trained and evaluated again; the rest is reused."""
    import yaml

    from vlpref.demo import DemoConfig

    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump({"rows": ["base", "sft", "povid-stage1", "povid-stage2"]}))
    first = vlpref("demo", "--quick", "--config", str(quick), "--out", str(tmp_path / "demo"))
    assert first.returncode == 0, first.stderr[-3000:]
    settings = DemoConfig(rows=["base", "sft", "povid-stage1", "povid-stage2"]).model_dump()
    settings["row_train"] = {"povid-stage1": {"lr": 3e-4}}
    quick.write_text(yaml.safe_dump({k: settings[k] for k in ("rows", "row_train")}))
    again = vlpref("demo", "--quick", "--config", str(quick), "--out", str(tmp_path / "demo"))
    assert again.returncode == 0, again.stderr[-3000:]
    said = " ".join((again.stdout + again.stderr).split())
    assert "train, POVID stage 1" in said and "train, POVID stage 2" in said  # stage 2 starts from stage 1
    assert "train, SFT" not in said and "evaluate, SFT" not in said
    assert "evaluate, POVID stage 1" in said
    # an edited data recipe makes that paper's data afresh (its journals alone would keep the old pairs) and
    # retrains the rows trained on it
    import shutil
    from pathlib import Path

    import vlpref as package

    recipes = tmp_path / "recipes"
    shutil.copytree(Path(package.__file__).parents[2] / "recipes", recipes)
    data_recipe = recipes / "li_lin_pei" / "data_world.yaml"
    data_recipe.write_text(data_recipe.read_text().replace("  world_images: 10\n",
                                                           "  world_images: 10\n  world_tasks: [describe]\n"))
    prompts = json.loads((tmp_path / "demo" / "data.json").read_text())["0"]["li_lin_pei"]["prompts"]
    quick.write_text(yaml.safe_dump({**{k: settings[k] for k in ("rows", "row_train")}, "recipes": str(recipes)}))
    third = vlpref("demo", "--quick", "--config", str(quick), "--out", str(tmp_path / "demo"))
    assert third.returncode == 0, third.stderr[-3000:]
    said = " ".join((third.stdout + third.stderr).split())
    assert json.loads((tmp_path / "demo" / "data.json").read_text())["0"]["li_lin_pei"]["prompts"] < prompts
    assert "train, SFT" in said and "train, POVID" not in said


def test_seeds_are_a_count_or_a_list():
    import pytest

    from vlpref.demo import DemoConfig

    assert DemoConfig(seeds="3").seeds == [0, 1, 2] and DemoConfig(seeds="5,6,7").seeds == [5, 6, 7]
    assert DemoConfig(seeds=2).seeds == [0, 1] and DemoConfig().seeds == [0] and DemoConfig(seeds="6,").seeds == [6]
    for bad in ("0", "5,5", "a,b", "-1,2", ",", "5,,6"):
        with pytest.raises(ValueError, match="seeds"):
            DemoConfig(seeds=bad)


def test_paired_differences_are_taken_seed_by_seed():
    """Hand numbers: base CHAIR_i 0.20 / 0.10 on seeds 5 / 6, the row 0.15 / 0.08: differences -0.05 and -0.02,
    mean -0.035, std sqrt(((-0.05+0.035)^2 + (-0.02+0.035)^2) / 1) = 0.0212."""
    import pytest

    from vlpref.demo import summarize

    def result(method, seed, chair_i):
        return {"method": method, "label": method, "seed": seed, **dict.fromkeys(METRICS, 0.5), "chair_i": chair_i}

    rows = summarize([result("base", 5, 0.20), result("base", 6, 0.10), result("seva", 5, 0.15),
                      result("seva", 6, 0.08)])
    seva = rows[1]
    assert seva["chair_i"] == pytest.approx(0.115) and seva["chair_i_diff"] == pytest.approx(-0.035)
    assert seva["chair_i_diff_std"] == pytest.approx(0.0212132, abs=1e-6) and seva["coverage_diff"] == 0


def test_console_tables_fit_80_columns():
    """Every demo row, with mean ± std and paired differences, fits an 80-column terminal: no header or cell cut to
    '…' (the one wide table once showed 'CHAIR…' and 'help…'), and every method name and metric is shown."""
    import io

    from rich.console import Console

    from vlpref.demo import console_tables, summarize

    results = [{"method": method, "label": method, "seed": seed, **dict.fromkeys(METRICS, 0.123456),
                "chair_i": 0.1 + seed / 100, "helpfulness": 3.21}
               for method in (row.name for row in ROWS) for seed in (5, 6, 7)]
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None)
    tables = console_tables(summarize(results))
    for table in tables:
        console.print(table)
    text = buffer.getvalue()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert "steerlm-in-range" in text and "0.123±.000" in text and "+0.000±.000" in text
    assert sum(len(table.columns) - 1 for table in tables) == 2 * len(METRICS)
