"""Training never loses work silently: checkpoints by default, on SIGINT / SIGTERM (one process and two), a finished
run rerun untouched, a refused resume naming the settings that differ, the plot, trackers checked at start, and the
reference pass's progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.training.test_train import config, losses, write_yaml
from vlpref.errors import ConfigError, VlprefError
from vlpref.models.vlm import VLM
from vlpref.training import checkpoint, stopping
from vlpref.training.data import load_examples
from vlpref.training.reference import ReferenceCache
from vlpref.training.trainer import Trainer, train

QUIET = {"log": lambda *a: None}


@pytest.fixture(autouse=True)
def default_signal_handlers():
    """Python's own SIGINT/SIGTERM handling for each test. A shell runs background jobs (`make test &`) with SIGINT
    ignored, and the trainer rightly leaves an ignored signal ignored: without this, the suite failed there."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def signal_after(monkeypatch, step: int, signum: int) -> None:
    """A real signal to this process at the end of optimizer step `step` (1-based), as Ctrl-C or kill would send."""
    original = Trainer._step

    def stepped(self, index):
        done = original(self, index)
        if index + 1 == step:
            signal.raise_signal(signum)
        return done

    monkeypatch.setattr(Trainer, "_step", stepped)


def steps_of(run: Path) -> list[int]:
    return [int(p.name.removeprefix(checkpoint.PREFIX)) for p in checkpoint.checkpoints(run)]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_says_so_and_the_rerun_resumes_exactly(tiny_dirs, pairs_dir, tmp_path, monkeypatch,
                                                                   signum, status):
    cfg = config(tiny_dirs["llava"], pairs_dir, max_steps=5, batch_size=1, save_each_epoch=False)
    train(cfg, tmp_path / "straight", **QUIET)
    before = signal.getsignal(signum)
    signal_after(monkeypatch, 3, signum)
    messages = []
    with pytest.raises(stopping.Interrupted) as stopped:
        train(cfg, tmp_path / "run", log=messages.append)
    assert stopped.value.code == status and signal.getsignal(signum) is before  # the handler is put back
    assert "interrupted at step 3; run the same command to resume" in messages
    assert steps_of(tmp_path / "run") == [3] and not (tmp_path / "run" / "summary.json").exists()
    assert (tmp_path / "run" / "log.png").stat().st_size > 0
    monkeypatch.undo()
    messages.clear()
    train(cfg, tmp_path / "run", log=messages.append)
    assert any(m.startswith("resumed from") and m.endswith("(step 3)") for m in messages)
    assert losses(tmp_path / "run") == losses(tmp_path / "straight")  # exactly, step for step


def test_the_cli_exits_with_the_signal_status_and_no_traceback(tiny_dirs, pairs_dir, tmp_path):
    cfg = write_yaml(config(tiny_dirs["llava"], pairs_dir, max_steps=3), tmp_path / "train.yaml")
    args = ["train", "--config", str(cfg), "--out", str(tmp_path / "run")]
    script = textwrap.dedent(f"""
        import signal, sys
        from vlpref.training.trainer import Trainer
        original = Trainer._step
        def stepped(self, index):
            done = original(self, index)
            if index == 0:
                signal.raise_signal(signal.SIGTERM)
            return done
        Trainer._step = stepped
        from vlpref.cli import main
        sys.argv = ["vlpref", *{args!r}]
        main()
        """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    stopped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "interrupted at step 1; run the same command to resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    again = subprocess.run([sys.executable, "-m", "vlpref", *args], capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(step 1)" in again.stderr and "step 3/3" in again.stderr and "step 1/3" not in again.stderr


def test_two_processes_stop_together_when_one_is_signalled(tiny_dirs, pairs_dir, tmp_path):
    """SIGINT reaches only rank 0: both processes must stop at the same step boundary (the flag is all-reduced),
    checkpoint, and end, rather than hang in the checkpoint's collectives."""
    cfg = write_yaml(config(tiny_dirs["llava"], pairs_dir, batch_size=1, max_steps=4, save_each_epoch=False),
                     tmp_path / "two.yaml")
    script = tmp_path / "signalled.py"
    script.write_text(textwrap.dedent("""
        import os, signal
        from vlpref.training.trainer import Trainer
        original = Trainer._step
        def stepped(self, index):
            done = original(self, index)
            if index == 1 and os.environ["RANK"] == "0":
                signal.raise_signal(signal.SIGINT)
            return done
        Trainer._step = stepped
        from vlpref.cli import main
        main()
        """))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
                           "train", "--config", str(cfg), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert "interrupted at step 2; run the same command to resume" in " ".join(done.stderr.split())
    assert steps_of(tmp_path / "run") == [2] and len(losses(tmp_path / "run")) == 2
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-000002" / "state.json").read_text())
    assert state["world_size"] == 2 and (tmp_path / "run" / "checkpoints" / "step-000002" / "rng-1.pt").is_file()


def test_checkpoints_by_default_at_each_epoch_end_and_by_time(tiny_dirs, pairs_dir, tmp_path):
    cfg = config(tiny_dirs["llava"], pairs_dir, max_steps=3, keep_checkpoints=5)  # 8 pairs, 4 a step: 2 per epoch
    assert cfg.save_minutes == 10 and cfg.save_each_epoch
    train(cfg, tmp_path / "default", **QUIET)
    assert steps_of(tmp_path / "default") == [2, 3]
    # a checkpoint after every step, as the time since the last one is always over a limit of ~0: same losses
    timed = cfg.model_copy(update={"save_minutes": 1e-9, "save_each_epoch": False})
    train(timed, tmp_path / "timed", **QUIET)
    assert steps_of(tmp_path / "timed") == [1, 2, 3]
    assert losses(tmp_path / "timed") == losses(tmp_path / "default")


def test_a_finished_run_is_not_trained_or_rewritten_again(tiny_dirs, pairs_dir, tmp_path):
    cfg = config(tiny_dirs["llava"], pairs_dir, max_steps=2)
    first = train(cfg, tmp_path / "run", **QUIET)
    files = ("summary.json", "log.jsonl", "model/model.safetensors", "log.png")
    made = {f: ((tmp_path / "run" / f).read_bytes(), (tmp_path / "run" / f).stat().st_mtime_ns) for f in files}
    for again in (lambda: train(cfg, tmp_path / "run", **QUIET),  # the CLI's path: nothing loads
                  lambda: Trainer(cfg, tmp_path / "run", **QUIET).run()):  # built anyway: still nothing retrains
        result = again()
        assert result.finished_before and (result.steps, result.final_loss) == (first.steps, first.final_loss)
        for f in files:
            path = tmp_path / "run" / f
            assert (path.read_bytes(), path.stat().st_mtime_ns) == made[f], f
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert summary == {"steps": 2, "final_loss": first.final_loss}  # strict JSON: no NaN


def test_other_settings_are_named(tiny_dirs, pairs_dir, tmp_path, monkeypatch):
    cfg = config(tiny_dirs["llava"], pairs_dir, max_steps=2)
    train(cfg, tmp_path / "done", **QUIET)  # finished
    with pytest.raises(VlprefError, match=r"other training settings \(beta: 0.1 -> 0.5; lora.r: 4 -> 8\)"):
        train(config(tiny_dirs["llava"], pairs_dir, max_steps=2, beta=0.5,
                     lora={"r": 8, "alpha": 8, "dropout": 0.1}),
              tmp_path / "done", **QUIET)
    signal_after(monkeypatch, 1, signal.SIGINT)
    with pytest.raises(stopping.Interrupted):  # unfinished, with a checkpoint at step 1
        train(cfg, tmp_path / "stopped", **QUIET)
    monkeypatch.undo()
    config_json = (tmp_path / "stopped" / "config.json").read_text()
    with pytest.raises(VlprefError, match=r"step-000001 was made with other training settings \(lr: 0.005 -> 0.001\)"):
        Trainer(config(tiny_dirs["llava"], pairs_dir, max_steps=2, lr=1e-3), tmp_path / "stopped", **QUIET)
    assert (tmp_path / "stopped" / "config.json").read_text() == config_json  # refused before anything is written


def test_a_rerun_that_starts_over_says_why(tiny_dirs, pairs_dir, tmp_path, monkeypatch):
    cfg = config(tiny_dirs["llava"], pairs_dir, max_steps=2)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text('{"step": 1, "loss": 0.7}\n')  # killed before its first checkpoint
    messages = []
    Trainer(cfg, tmp_path / "run", log=messages.append)
    assert any(m.startswith("no checkpoint in") and "training from step 1" in m for m in messages)
    signal_after(monkeypatch, 1, signal.SIGINT)
    with pytest.raises(stopping.Interrupted):
        train(cfg, tmp_path / "run", **QUIET)
    monkeypatch.undo()
    messages.clear()
    train(cfg, tmp_path / "run", resume=False, log=messages.append)
    assert any(m.startswith("not resuming (--no-resume): the 1 checkpoint(s)") for m in messages)
    assert not any(m.startswith("resumed from") for m in messages) and steps_of(tmp_path / "run") == [2]


def test_a_missing_tracker_package_is_an_error_at_start(tiny_dirs, pairs_dir, tmp_path, monkeypatch):
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else found(name, *a))
    with pytest.raises(ConfigError, match="report_to: tensorboard needs the tensorboard package"):
        Trainer(config(tiny_dirs["llava"], pairs_dir, report_to=["tensorboard"]), tmp_path / "run", **QUIET)
    assert not (tmp_path / "run").exists()


def test_the_reference_pass_reports_count_rate_and_time_left(tiny_dirs, pairs_dir, tmp_path):
    vlm = VLM.load(tiny_dirs["llava"])
    examples, _ = load_examples(pairs_dir, vlm, "pairs", 256, "response")
    cache = ReferenceCache(tmp_path / "ref.sqlite", "fingerprint")
    messages = []
    cache.compute(vlm, examples, pairs_dir, lambda batch: torch.zeros(len(batch), 2), batch_size=3,
                  log=messages.append, every=0)
    progress = [m for m in messages if "left)" in m]
    assert [m.split(" (")[0] for m in progress] == ["reference log-probs: 3/8", "reference log-probs: 6/8"]
    assert all("example(s)/s, " in m for m in progress)
    assert messages[0] == "reference log-probs: computing 8 example(s)"
    assert messages[-1].startswith("reference log-probs: computed 8 example(s) in ")


def test_a_second_ctrl_c_stops_at_once_and_ignored_signals_stay_ignored():
    with stopping.Signals(say=False) as signals:
        signals.handle(signal.SIGINT)
        signals.handle(signal.SIGTERM)  # torchrun's SIGTERM after the terminal's SIGINT: still a clean stop
        assert signals.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signals.handle(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) != signals.handle  # handlers already put back
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with stopping.Signals(say=False):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
