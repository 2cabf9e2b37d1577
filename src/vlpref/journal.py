"""A stage's record of finished work, so a killed run started again picks up where it stopped.

    >>> journal = Journal("out/journal.sqlite")
    >>> key = content_key("sample", model_id, prompt_dict, decoding)      # a hash of everything the result depends on
    >>> if (done := journal.get(key)) is None:
    ...     journal.put(key, {"text": call_the_model()})

Each finished item is committed on its own (sqlite3 in WAL mode), so a `kill -9` loses at most the items in flight;
the next run finds the rest and never repeats their model or API calls. Failures are journalled too (with their
reason and attempt count) and retried by the next run. Outputs are written from the journal in input order once
every item is done, so an interrupted-and-resumed run writes exactly what an uninterrupted one does.

Keys are content hashes, not positions: editing the input (another prompt, other decoding settings) makes new keys,
and finished work for unchanged items is still reused. Secrets never enter a key or a value (callers pass the
endpoint URL and model name, not the API key).

sqlite3 is the standard library's embedded store: atomic commits and crash safety without a server.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlpref.errors import VlprefError


def content_key(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts` (sorted keys, no whitespace): equal content, equal key."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so each put is its own durable transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Several processes may open a new journal at once (training's processes share one reference cache).
        # Switching a fresh file to WAL takes a lock that sqlite refuses with "database is locked" at once, without
        # waiting out its busy timeout, so the set-up is retried briefly.
        for attempt in range(100):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, value TEXT NOT NULL, at REAL)")
                self._db.execute("CREATE TABLE IF NOT EXISTS failed "
                                 "(key TEXT PRIMARY KEY, reason TEXT NOT NULL, attempts INTEGER NOT NULL, at REAL)")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 99:
                    raise
                time.sleep(0.01 * (1 + attempt % 10))

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM done WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        """Record finished work (and clear an earlier failure of the same item)."""
        self._db.execute("BEGIN")
        self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))
        self._db.execute("DELETE FROM failed WHERE key = ?", (key,))
        self._db.execute("COMMIT")

    def fail(self, key: str, reason: str) -> None:
        self._db.execute(
            "INSERT INTO failed VALUES (?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
            "reason = excluded.reason, attempts = attempts + 1, at = excluded.at", (key, reason, time.time()))

    def failures(self) -> dict[str, tuple[str, int]]:
        """key -> (last reason, attempts) for items that have failed and not succeeded since."""
        return {k: (r, n) for k, r, n in self._db.execute("SELECT key, reason, attempts FROM failed")}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM done").fetchone()[0]

    def close(self) -> None:
        self._db.close()


FAILED_FILE = "failed.jsonl"


def clear_failures(out: Path) -> None:
    """Forget an earlier run's failure report: out/failed.jsonl lists this run's failures only."""
    (Path(out) / FAILED_FILE).unlink(missing_ok=True)


@dataclass
class Journalled:
    """What `run_journalled` returns: each item's journalled value (None where it failed) and the failures."""

    values: list[Any]
    failed: list[tuple[str, str]]  # (item name, reason), also in out/failed.jsonl
    failed_path: Path

    def raise_failures(self, what: str, done: str = "") -> None:
        """Raise the stage's error naming the failures, if any (call it once the partial output is written)."""
        if self.failed:
            raise VlprefError(f"{len(self.failed)} {what} failed after retries (first: {self.failed[0][1]}); {done}"
                              f"reasons in {self.failed_path}. Run the same command again to retry only those.")


def run_journalled(journal: Journal, keys: list[str], names: list[str], run: Callable[[list[int], Callable], None],
                   out: Path, field: str, encode: Callable[[Any], Any] = lambda result: result,
                   announce: Callable[[int, int], None] | None = None) -> Journalled:
    """Run every item not yet in the journal, journal each result the moment it lands, and record the failures.

        >>> done = run_journalled(journal, keys, [p.id for p in prompts], run, out, field="prompt")
        >>> write_records(out, ..., [v for v in done.values if v is not None], incomplete=len(done.failed))
        >>> done.raise_failures("judge call(s)")

    keys[i] is item i's content key (items with equal keys run once) and names[i] its id in out/failed.jsonl.
    `run(pending, landed)` does the work for the item indices in `pending` and calls `landed(j, result)` as the result
    for pending[j] arrives: a failure (anything with a `.reason`, e.g. vlpref.models.remote.Failure) is journalled
    as failed, anything else is stored as `encode(result)`. Failures of earlier runs are retried. `announce(items,
    pending)` is told the counts (distinct items, items to run) before anything runs. Afterwards
    out/failed.jsonl lists this run's failures ({field: name, reason}) or does not exist.
    """
    out = Path(out)
    clear_failures(out)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    pending = [i for key, i in first.items() if journal.get(key) is None]
    if announce is not None:
        announce(len(first), len(pending))
    failed: list[tuple[str, str]] = []

    def landed(j: int, result: Any) -> None:
        i = pending[j]
        if hasattr(result, "reason"):
            journal.fail(keys[i], result.reason)
            failed.append((names[i], result.reason))
        else:
            journal.put(keys[i], encode(result))

    if pending:
        run(pending, landed)
    path = out / FAILED_FILE
    if failed:
        out.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for name, reason in failed:
                f.write(json.dumps({field: name, "reason": reason}) + "\n")
    return Journalled([journal.get(key) for key in keys], failed, path)
