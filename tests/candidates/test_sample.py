"""Sampling and judging resume after SIGKILL: same output as an uninterrupted run, no finished request repeated."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlpref.candidates.sample import PoolMember, SampleConfig, sample
from vlpref.data.augment import AugmentConfig
from vlpref.data.schema import DecodingParams
from vlpref.data.store import read_records
from vlpref.journal import Journal, content_key
from vlpref.world.tasks import build_split


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prompts")
    build_split(root, "prefs", 2, tasks=("describe", "qa"))
    return root


def config(prompts: Path, **kw) -> SampleConfig:
    member = PoolMember(model="world:world-early", n=2, batch_size=4,
                        decoding=DecodingParams(temperature=1.0, max_new_tokens=24))
    return SampleConfig(prompts=str(prompts), pool=[member], **kw)


def test_journal_roundtrip_and_failures(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    key = content_key("x", {"b": 1, "a": 2})
    assert key == content_key("x", {"a": 2, "b": 1})  # canonical: key order does not matter
    assert j.get(key) is None
    j.fail(key, "HTTP 503")
    j.fail(key, "timeout")
    assert j.failures() == {key: ("timeout", 2)}
    j.put(key, {"text": "ok"})
    assert j.get(key) == {"text": "ok"} and j.failures() == {} and len(j) == 1


def test_sample_is_seeded_and_resumes_without_repeats(prompts, tmp_path):
    cfg = config(prompts, augment=AugmentConfig(op="diffusion", noise_step=800))
    first = sample(cfg, tmp_path / "a")
    n_prompts = len(read_records(prompts))
    assert len(first) == n_prompts * 2 * 2  # 2 per prompt on the original, 2 on the noised images
    assert {c.images is None for c in first} == {True, False}
    assert all(c.decoding.seed is not None for c in first)
    # A second run finds everything in the journal: no model is even loaded.
    logs = []
    again = sample(cfg, tmp_path / "a", log=logs.append)
    assert again == first and "0 to run" in logs[0]
    # Same config elsewhere: identical candidates (seeded per request, independent of batching).
    other = config(prompts, augment=AugmentConfig(op="diffusion", noise_step=800))
    other.pool[0].batch_size = 3
    assert sample(other, tmp_path / "b") == first


def _journal_rows(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM done").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_when(cmd: list[str], journal: Path, rows: int, timeout: float = 120) -> int:
    """Start `cmd`, SIGKILL it once the journal holds `rows` finished items; returns the rows at the kill."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and _journal_rows(journal) < rows:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; give it more work"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return _journal_rows(journal)


def test_sigkill_then_rerun_equals_uninterrupted(prompts, tmp_path):
    recipe = tmp_path / "sample.yaml"
    recipe.write_text(
        f"prompts: {prompts}\n"
        "pool:\n  - model: world:world-early\n    n: 2\n    batch_size: 2\n"
        "    decoding: {temperature: 1.0, max_new_tokens: 24}\n")
    vlpref = [sys.executable, "-m", "vlpref"]
    killed = tmp_path / "killed"
    at_kill = _kill_when([*vlpref, "sample", "--config", str(recipe), "--out", str(killed)],
                         killed / "journal.sqlite", rows=4)
    assert 4 <= at_kill < len(read_records(prompts)) * 2
    rerun = subprocess.run([*vlpref, "sample", "--config", str(recipe), "--out", str(killed)],
                           capture_output=True, text=True, check=True)
    total = len(read_records(prompts)) * 2
    assert f"{at_kill} already done, {total - at_kill} to run" in " ".join(rerun.stderr.split())
    whole = tmp_path / "whole"
    subprocess.run([*vlpref, "sample", "--config", str(recipe), "--out", str(whole)], capture_output=True, check=True)
    assert (killed / "records.jsonl").read_bytes() == (whole / "records.jsonl").read_bytes()



def test_judge_crash_then_rerun_repeats_no_call(prompts, tmp_path):
    """A judge that dies after 3 calls; the rerun makes only the missing calls and writes what a clean run does.
    (The oracle judges a prompt in microseconds, too fast to SIGKILL reliably mid-run; the HTTP judge's SIGKILL test
    lives with the served endpoint.)"""
    from vlpref.annotations.judge import JudgeConfig, judge
    from vlpref.world.judge import OracleJudge

    cands = tmp_path / "cands"
    sample(config(prompts), cands)
    calls = []

    class Dying(OracleJudge):
        def annotate(self, prompt, candidates, rubric="vlfeedback"):
            if len(calls) == 3:
                raise RuntimeError("killed")
            calls.append(prompt.id)
            return super().annotate(prompt, candidates, rubric)

    with pytest.raises(RuntimeError):
        judge(JudgeConfig(), cands, tmp_path / "judged", oracle=Dying())
    first = list(calls)
    calls.clear()
    logs = []
    judge(JudgeConfig(), cands, tmp_path / "judged", log=logs.append, oracle=OracleJudge())
    n = len(read_records(prompts))
    assert len(first) == 3 and f"3 already judged, {n - 3} to judge" in logs[0]
    assert f"({n - 3} judge calls this run" in logs[1]
    judge(JudgeConfig(), cands, tmp_path / "fresh", oracle=OracleJudge())
    assert (tmp_path / "judged" / "records.jsonl").read_bytes() == (tmp_path / "fresh" / "records.jsonl").read_bytes()
