"""`vlpref demo --quick`: every row runs through data, training and evaluation, the results have the promised
shape, and a rerun resumes instead of redoing the work."""

from __future__ import annotations

import json

from tests.test_cli import vlpref
from vlpref.demo import METRICS, ROWS


def test_quick_demo_writes_every_row_and_resumes(tmp_path):
    out = vlpref("demo", "--quick", "--out", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["method"] for r in results] == [r.name for r in ROWS]
    for row in results:
        assert set(METRICS) <= set(row) and all(isinstance(row[k], float) for k in METRICS)
        assert 0 <= row["chair_i"] <= 1 and 1 <= row["helpfulness"] <= 5
    assert "| SeVa |" in (tmp_path / "demo" / "results.md").read_text()
    assert all((tmp_path / "demo" / f"{name}.png").stat().st_size > 1000
               for name in ("pope_f1", "chair", "coverage", "oracle"))
    for row in ROWS[1:]:
        assert (tmp_path / "demo" / "seed-0" / "train" / row.name / "model" / "config.json").is_file()
    again = vlpref("demo", "--quick", "--out", str(tmp_path / "demo"))
    assert again.returncode == 0 and "train," not in again.stdout and "evaluate," not in again.stdout


def test_demo_rows_are_checked():
    import pytest

    from vlpref.demo import DemoConfig

    with pytest.raises(ValueError, match="povid-stage2 starts from povid-stage1's model"):
        DemoConfig(rows=["base", "povid-stage2"])
    with pytest.raises(ValueError, match="unknown row 'dpo'"):
        DemoConfig(rows=["dpo"])
