"""The `vlpref` command as a user runs it: a subprocess, its exit status and what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.data.conftest import write_image


def vlpref(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "vlpref", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_help_lists_only_built_verbs():
    out = vlpref("--help")
    assert out.returncode == 0
    for verb in ("tiny", "data", "demo", "sample", "judge", "pairs", "serve", "prefs", "bench", "world", "train",
                 "eval", "view"):
        assert f" {verb} " in out.stdout, verb
    data = vlpref("data", "--help").stdout
    for verb in ("import", "export", "validate", "to-hf", "from-hf"):
        assert verb in data


def test_import_skip_mode_and_export(tmp_path):
    write_image(tmp_path / "imgs" / "a.png")
    rows = [
        {"id": "a", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                         {"from": "gpt", "value": "Red."}]},
        {"id": "b", "image": "missing.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}]},
    ]
    (tmp_path / "in.json").write_text(json.dumps(rows))
    out = vlpref("data", "import", "llava", str(tmp_path / "in.json"), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "ds"), "--on-error", "skip")
    assert out.returncode == 0, out.stderr
    assert "wrote 1 prompts" in out.stderr and "skipped 1 bad record(s)" in out.stderr
    reject = json.loads((tmp_path / "ds" / "rejects.jsonl").read_text())
    assert reject["record_id"] == "b" and reject["field"] == "image"
    assert vlpref("data", "validate", str(tmp_path / "ds")).returncode == 0
    out = vlpref("data", "export", "trl", str(tmp_path / "ds"), str(tmp_path / "trl"))
    assert out.returncode == 0 and "wrote 1 rows" in out.stderr


def test_bad_input_exits_2_with_a_message_not_a_traceback(tmp_path):
    write_image(tmp_path / "imgs" / "a.png")
    (tmp_path / "in.json").write_text(json.dumps([{"id": "q7", "image": "a.png", "conversations": [
        {"from": "human", "value": "no placeholder here"}]}]))
    out = vlpref("data", "import", "llava", str(tmp_path / "in.json"), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "ds"))
    assert out.returncode == 2
    assert "record q7, field conversations: 0 <image> placeholder(s) for 1 image(s)" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_config_key(tmp_path):
    (tmp_path / "c.yaml").write_text("recipe: demo\nworld_imags: 2\n")
    out = vlpref("demo", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "unknown key 'world_imags'; did you mean 'world_images'?" in out.stderr


def test_tiny_model_from_the_cli(tmp_path):
    assert vlpref("tiny", "gemma3", str(tmp_path / "g")).returncode == 0
    assert (tmp_path / "g" / "model.safetensors").is_file() and (tmp_path / "g" / "processor_config.json").is_file()


def test_error_messages_print_brackets_as_text(monkeypatch, capsys):
    """An error naming `[tensorboard]` keeps the word, and `[/x]` in a message does not crash rich's markup."""
    import importlib

    import pytest

    from vlpref.errors import ConfigError

    cli = importlib.import_module("vlpref.cli.app")  # the module, not the typer app vlpref.cli exports

    def fail():
        raise ConfigError("report_to: [tensorboard] needs the tensorboard package; [/x] is text")

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    assert "[tensorboard] needs" in capsys.readouterr().err
