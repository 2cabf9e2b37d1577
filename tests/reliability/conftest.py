"""Writes the fault suite's figures (kills, requests, faults injected, cases tried, items lost) to
runs/reliability/figures.json at the end of a session that ran any of it (docs/reliability.md quotes them)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.harness import FIGURES


def pytest_sessionfinish(session, exitstatus):
    if FIGURES:
        out = Path(__file__).resolve().parents[2] / "runs" / "reliability" / "figures.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**dict(sorted(FIGURES.items())), "exit_status": int(exitstatus)}, indent=1))
