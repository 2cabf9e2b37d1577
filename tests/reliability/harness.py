"""The fault suite's tools: SIGKILL a vlpref command at chosen points of its progress, a scripted OpenAI-compatible
endpoint that records which item each request was for, and the figures the suite reports (docs/reliability.md).

A kill point is a count of finished items in the stage's journal (or of logged training steps): the command is
started, watched every 10 ms, and killed with SIGKILL once it has finished that many. Each item an endpoint
answers carries a tag (`#<hash of the request>`) in its reply, so the journal's contents say which items were
finished when a run was killed, and the endpoint's log says which were asked again after."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

VLPREF = [sys.executable, "-m", "vlpref"]
# VLPREF_LONG_SUITE=1: the long variant (twice the kill points, ten times the property cases); opt-in, not in CI.
LONG = os.environ.get("VLPREF_LONG_SUITE") == "1"
TAG = re.compile(r"#([0-9a-f]{10})")

# Totals over the session, written to runs/reliability/figures.json by conftest.py for docs/reliability.md.
FIGURES: Counter = Counter()


def journal_rows(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM done").fetchone()[0]
    except sqlite3.Error:
        return 0


def log_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def finished_items(journal: Path) -> set[str]:
    """The tags of every item the journal holds a result for."""
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            values = [row[0] for row in db.execute("SELECT value FROM done")]
    except sqlite3.Error:
        return set()
    return {tag for value in values for tag in TAG.findall(value)}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **kw.pop("env", {})}, **kw)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}"
    return result


def kill_at(cmd: list[str], progress, point: int, timeout: float = 180) -> int:
    """Start `cmd`; SIGKILL it once `progress()` reaches `point`. Returns the progress at the kill; fails if the
    command finished (or hung) first, since then nothing was tested."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and progress() < point:
        time.sleep(0.01)
    if proc.poll() is not None:
        raise AssertionError(f"the run ended (status {proc.returncode}) before kill point {point}; give it more work"
                             f"\n{proc.stderr.read()[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)  # also when the point was not reached in time: no run is left behind
    assert time.time() < deadline, f"kill point {point} not reached in {timeout} s"
    proc.wait()
    FIGURES["kills"] += 1
    return progress()


def kill_serially(cmd: list[str], progress, points: list[int], endpoint: ScriptedEndpoint | None = None,
                  journal: Path | None = None) -> list[dict]:
    """Run `cmd` again and again, killing run k at `points[k]`, then once to the end. With an endpoint, checks that
    no run asked for an item the journal already held when it started, nor for one item twice."""
    kills = []
    for point in [*points, None]:
        before = finished_items(journal) if journal else set()
        if endpoint is not None:
            endpoint.start_run()
        at = kill_at(cmd, progress, point) if point is not None else (run(cmd), progress())[1]
        kills.append({"point": point, "progress": at})
        if endpoint is not None:
            asked = endpoint.asked_in_run()
            repeated = sorted(set(asked) & before)
            twice = sorted(item for item, n in Counter(asked).items() if n > 1)
            FIGURES["requests"] += len(asked)
            FIGURES["repeated_requests_for_finished_items"] += len(repeated) + len(twice)
            assert not repeated, f"asked again for {len(repeated)} item(s) finished before the run started"
            assert not twice, f"asked twice in one run for {twice[:3]}"
    return kills


class ScriptedEndpoint:
    """`generate(chats, params)` for `vlpref.serve.build_app`: replies `reply(text, tag)` after `delay` seconds,
    logging each request's item (a hash of its last message) under the current run."""

    def __init__(self, reply, delay: float = 0.03):
        self.reply, self.delay = reply, delay
        self.log: list[tuple[int, str]] = []
        self.current = 0
        self._lock = threading.Lock()

    def start_run(self) -> None:
        # A killed client's requests may still be queued in the server; they must count for the killed run, so
        # wait until the server has been quiet for a while before counting the next run's requests.
        while True:
            seen = len(self.log)
            time.sleep(max(0.25, 4 * self.delay))
            if len(self.log) == seen:
                break
        self.current += 1

    def asked_in_run(self, run: int | None = None) -> list[str]:
        run = self.current if run is None else run
        return [item for r, item in self.log if r == run]

    def __call__(self, chats, params):
        from vlpref.models.vlm import Generation

        out = []
        for chat in chats:
            text = chat.turns[-1].text
            tag = hashlib.sha256(text.encode()).hexdigest()[:10]
            with self._lock:
                self.log.append((self.current, tag))
            time.sleep(self.delay)
            out.append(Generation(text=self.reply(text, tag), token_ids=[1], finish_reason="stop"))
        return out


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def same_records(a: Path, b: Path, name: str = "records.jsonl", replace: tuple[str, str] | None = None) -> None:
    """Byte-identical outputs, and no record id twice (nothing duplicated; equality then means nothing lost).
    `replace`: (old, new) applied to `a`'s text first, e.g. an endpoint URL that differs by design."""
    left, right = (a / name).read_bytes(), (b / name).read_bytes()
    if replace:
        left = left.replace(replace[0].encode(), replace[1].encode())
    rows = [json.loads(line) for line in left.decode().splitlines() if line.strip()]
    ids = [row.get("id", row.get("candidate_id", row.get("question_id"))) for row in rows]  # whichever the file has
    FIGURES["records_checked"] += len(ids)
    assert len(ids) == len(set(ids)), "a record was written twice"
    FIGURES["records_lost_or_changed"] += left != right
    assert left == right, f"{a / name} differs from the uninterrupted run's"
