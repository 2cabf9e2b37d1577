"""`--set KEY=VALUE` on train, prefs and demo: any config key reaches the run, dotted for nested ones."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.test_cli import vlpref
from vlpref.cli import app

RECIPES = Path(__file__).parent.parent / "recipes"


@pytest.fixture
def ran(monkeypatch) -> dict:
    """Each command's run function, replaced by one that keeps the config it was given."""
    import vlpref.demo
    import vlpref.prefs
    import vlpref.training.trainer

    got: dict = {}

    def keep(name, result=None):
        def run(cfg, *args, **kwargs):
            got[name] = cfg
            return result
        return run

    monkeypatch.setattr(vlpref.training.trainer, "train", keep("train", SimpleNamespace(
        steps=1, final_loss=0.0, finished_before=False)))
    monkeypatch.setattr(vlpref.prefs, "run_recipe", keep("prefs"))
    monkeypatch.setattr(vlpref.demo, "run_demo", keep("demo"))
    return got


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)


def test_train(ran, tmp_path):
    invoke("train", "--config", str(RECIPES / "seva" / "train_world.yaml"), "--out", str(tmp_path), "--seed", "4",
           "--set", "lr=2e-6", "--set", "lora.r=4", "--set", "grad_accum=3", "--set", "report_to=[tensorboard]")
    cfg = ran["train"]
    assert (cfg.lr, cfg.lora.r, cfg.grad_accum, cfg.report_to, cfg.seed) == (2e-6, 4, 3, ["tensorboard"], 4)


def test_prefs(ran, tmp_path):
    invoke("prefs", "--config", str(RECIPES / "vlfeedback" / "data_world.yaml"), "--out", str(tmp_path),
           "--set", "judge.rubric=helpsteer", "--set", "sample.world_images=5")
    assert ran["prefs"].judge.rubric == "helpsteer" and ran["prefs"].sample.world_images == 5


def test_demo(ran, tmp_path):
    invoke("demo", "--out", str(tmp_path), "--set", "eval_images=9", "--set", "train.max_steps=3")
    assert ran["demo"].eval_images == 9 and ran["demo"].train == {"max_steps": 3}


def test_an_hf_name_points_at_ours_exit_2(tmp_path):
    out = vlpref("train", "--method", "dpo", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--set", "learning_rate=1e-4")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "error: --set learning_rate: unknown key 'learning_rate'; did you mean 'lr'?"
