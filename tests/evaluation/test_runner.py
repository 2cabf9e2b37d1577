"""The runner itself: its benchmark table says which settings each benchmark reads and every other one is refused,
naming the benchmarks that read it (one test per kind of refused setting); the table matches what the benchmark
modules read; and judge calls that fail are journalled, listed in OUT/failed.jsonl and retried alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.test_cli import vlpref
from vlpref.config import parse
from vlpref.errors import ConfigError, VlprefError
from vlpref.evaluation import run as run_module
from vlpref.evaluation.run import BENCHMARKS, SHARED, EvalConfig, JudgeSettings, benchmark_function, evaluate
from vlpref.models.remote import Completion, Failure, RemoteEndpoint
from vlpref.models.vlm import Generation

JUDGE = JudgeSettings(endpoint=RemoteEndpoint(base_url="http://127.0.0.1:9/v1", model="judge"))


def quiet(*_):
    pass


# -- refused settings, one test per kind ----------------------------------------------------------------------------

def test_another_benchmarks_own_setting_is_refused():
    with pytest.raises(ValueError, match=r"chair_images: pope does not read it; only chair does"):
        EvalConfig(benchmark="pope", data="x", chair_images=10)
    with pytest.raises(ValueError, match=r"amber_tasks: world does not read it; only amber does"):
        EvalConfig(benchmark="world", amber_tasks=["generative"])
    with pytest.raises(ValueError, match=r"steer: mme does not read it; only world does"):
        EvalConfig(benchmark="mme", data="x", steer="Helpfulness:4")


def test_a_judge_for_a_benchmark_that_is_not_judged_is_refused():
    with pytest.raises(ValueError, match=r"judge: pope does not read it; only mmhal, mmvet, llava-bench and "
                                         "mtbench do"):
        EvalConfig(benchmark="pope", data="x", judge=JUDGE)


def test_a_prompt_or_scoring_choice_the_benchmark_does_not_offer_is_refused():
    # chair, mmhal, mtbench and the world have one prompt format; only pope has two scorers
    for benchmark in ("chair", "mmhal", "mtbench", "world"):
        extra = {"judge": JUDGE} if benchmark in ("mmhal", "mtbench") else {}
        with pytest.raises(ValueError, match=rf"style: {benchmark} does not read it; only pope, mme, mmvet, "
                                             "llava-bench and amber do"):
            EvalConfig(benchmark=benchmark, data="x", style="official", **extra)
    with pytest.raises(ValueError, match=r"scoring: mme does not read it; only pope does"):
        EvalConfig(benchmark="mme", data="x", scoring="lmms-eval")


def test_files_and_limits_the_benchmark_does_not_read_are_refused():
    with pytest.raises(ValueError, match=r"images: mme does not read it; only pope, chair, mmhal, mmvet, llava-bench "
                                         "and amber do"):
        EvalConfig(benchmark="mme", data="x", images="y")  # MME's images sit next to its questions
    with pytest.raises(ValueError, match=r"images: mtbench does not read it"):  # text only
        EvalConfig(benchmark="mtbench", data="x", judge=JUDGE, images="y")
    with pytest.raises(ValueError, match=r"limit: chair does not read it; only pope, mme, mmhal, mmvet, llava-bench, "
                                         "mtbench and amber do"):
        EvalConfig(benchmark="chair", data="x", limit=5)  # chair draws `chair_images` instead
    with pytest.raises(ValueError, match=r"limit: world does not read it"):
        EvalConfig(benchmark="world", limit=5)


def test_every_refused_key_is_named_at_once_in_yaml_and_on_the_command_line(tmp_path):
    with pytest.raises(ConfigError) as error:
        parse(EvalConfig, {"benchmark": "chair", "data": "x", "style": "official", "limit": 3}, source="eval.yaml")
    message = str(error.value)
    assert message.startswith("eval.yaml: ")
    assert "limit: chair does not read it" in message and "style: chair does not read it" in message
    cli = vlpref("eval", "--benchmark", "mme", "--data", str(tmp_path), "--images", str(tmp_path), "--out",
                 str(tmp_path / "out"))
    assert cli.returncode == 2 and "images: mme does not read it" in cli.stderr
    assert not (tmp_path / "out" / "journal.sqlite").exists()  # refused before anything ran


def test_what_every_benchmark_reads_is_accepted():
    # a setting at its default value counts as given when it is passed: still fine where it is read
    EvalConfig(benchmark="mtbench", data="x", judge=JUDGE, model="m", revision="main", dtype="bfloat16",
               device="cpu", batch_size=2, max_new_tokens=5, limit=3)
    EvalConfig(benchmark="pope", data="x", images="y", limit=2, style="llava", scoring="official")
    EvalConfig(benchmark="world", data=None, world_images=3, steer=None)  # what `vlpref eval world` passes


# -- the table ------------------------------------------------------------------------------------------------------

SOURCE = Path(run_module.__file__).parent
# Settings a benchmark reads through the Session, and the call that reads each.
THROUGH_SESSION = {"data": re.compile(r"\.data\(\)|config\.data"), "images": re.compile(r"\.images_root\("),
                   "limit": re.compile(r"\.limited\("), "judge": re.compile(r"session\.judge\(")}


def test_the_table_names_real_settings_and_every_setting_has_a_reader():
    fields = set(EvalConfig.model_fields)
    for name, benchmark in BENCHMARKS.items():
        assert set(benchmark.reads) <= fields - set(SHARED), name
        assert set(benchmark.needs) <= set(benchmark.reads), name
        assert callable(benchmark_function(name)), name
    assert fields - set(SHARED) == {key for b in BENCHMARKS.values() for key in b.reads}  # no setting read by none


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_the_table_says_what_the_benchmark_module_reads(name):
    """Each benchmark module reads exactly the settings its row lists (beyond the shared ones): a new `config.x`
    in a module, or a row listing a setting its module ignores, fails here."""
    module = BENCHMARKS[name].function.partition(":")[0]
    text = (SOURCE / f"{module.rsplit('.', 1)[1]}.py").read_text()
    direct = set(re.findall(r"\bconfig\.(\w+)", text)) & set(EvalConfig.model_fields)
    read = direct | {key for key, pattern in THROUGH_SESSION.items() if pattern.search(text)}
    assert read - set(SHARED) == set(BENCHMARKS[name].reads)


# -- judge failures -------------------------------------------------------------------------------------------------

def mmhal_data(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    records = [{"question_type": "attribute", "image_id": f"i{i}", "image_src": f"https://example.com/img{i}.jpg",
                "image_content": ["Dog"], "question": f"Question {i}?", "gt_answer": "A dog.", "model_answer": ""}
               for i in range(3)]
    (root / "response_template.json").write_text(json.dumps(records))
    for i in range(3):
        Image.new("RGB", (8, 8), (0, 0, 200)).save(root / "images" / f"img{i}.jpg")


def test_failed_judge_calls_are_listed_and_only_they_are_asked_again(tmp_path, monkeypatch):
    mmhal_data(tmp_path / "MMHal")

    class Answers:
        def generate(self, chats, params, batch_size=8):
            return [Generation(text="A dog.", token_ids=[1], finish_reason="stop") for _ in chats]

    state = {"asked": [], "broken": True}

    def complete(messages, params, extras, on_done):  # question 1's request fails while `broken`
        for j, message in enumerate(messages):
            text = message[0]["content"]
            state["asked"].append(text)
            broken = state["broken"] and "Question 1?" in text
            on_done(j, Failure("HTTP 503") if broken else Completion("Fine.\nRating: 4", "stop"))

    monkeypatch.setattr(run_module.Session, "vlm", lambda self: Answers())
    monkeypatch.setattr(run_module.Session, "_judge_complete", lambda self: complete)
    config = EvalConfig(benchmark="mmhal", data=str(tmp_path / "MMHal"), judge=JUDGE)
    out = tmp_path / "out"
    with pytest.raises(VlprefError, match=r"1 judge calls failed after retries \(first: HTTP 503\); the answers "
                                          r"and the other judge replies are journalled; reasons in .*failed.jsonl"):
        evaluate(config, out, log=quiet)
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert failed == [{"request": "mmhal:1", "reason": "HTTP 503"}] and len(state["asked"]) == 3
    state["broken"] = False
    results = evaluate(config, out, log=quiet)
    assert len(state["asked"]) == 4 and "Question 1?" in state["asked"][-1]  # only the failed one again
    assert results["calls"] == {"answers_generated": 0, "answers_cached": 3, "judge_calls": 1, "judge_cached": 2}
    assert results["average"] == 4.0 and not (out / "failed.jsonl").exists()
