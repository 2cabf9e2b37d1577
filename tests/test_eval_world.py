"""`vlpref eval world` writes the world benchmarks' JSON, markdown and plot; `vlpref eval compare` puts runs side
by side with deltas and names bad input; the world goes through the evaluation runner like every benchmark (journal,
items for the viewer), and `evaluate_world`, the entry point for Python callers, gives the runner's numbers."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.test_cli import vlpref
from vlpref.errors import VlprefError
from vlpref.evaluation.run import EvalConfig, evaluate
from vlpref.serve import serve_in_thread
from vlpref.view.app import build_app


def test_world_eval_then_compare(tmp_path):
    first = vlpref("eval", "world", "--images", "3", "--out", str(tmp_path / "base"))
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((tmp_path / "base" / "results.json").read_text())
    for key in ("pope_f1_random", "pope_f1_popular", "pope_f1_adversarial", "chair_s", "chair_i", "coverage",
                "attribute_hallucination", "count_hallucination", "relation_hallucination", "helpfulness",
                "faithfulness"):
        assert isinstance(results[key], float), key
    assert results["benchmark"] == "world" and 1 <= results["helpfulness"] <= 5
    assert "| chair_i ↓ |" in (tmp_path / "base" / "results.md").read_text()
    assert (tmp_path / "base" / "results.png").stat().st_size > 1000
    steered = vlpref("eval", "world", "--data", str(tmp_path / "base" / "eval-split"), "--steer",
                     "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4", "--out", str(tmp_path / "s"))
    assert steered.returncode == 0, steered.stderr[-2000:]
    cmp = vlpref("eval", "compare", str(tmp_path / "base"), str(tmp_path / "s"), "--out", str(tmp_path / "cmp"))
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert cmp.stdout.strip() == table.strip() and "WARNING" not in table  # the same split: no warning
    assert "| metric | n | base | s |" in table and "| chair_i ↓ |" in table
    row = next(line for line in table.splitlines() if line.startswith("| coverage |"))
    assert row.count("(") == 1 and ("(+" in row or "(-" in row)  # one delta column, signed
    assert row.startswith("| coverage | 3 | ") and " ± " in row  # n: the 3 described images; a share: an interval
    assert (tmp_path / "cmp" / "compare.png").is_file()


def test_compare_names_bad_input(tmp_path):
    (tmp_path / "a").mkdir()
    out = vlpref("eval", "compare", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "c"))
    assert out.returncode == 2 and "no results.json" in out.stderr
    one = vlpref("eval", "compare", str(tmp_path / "a"), "--out", str(tmp_path / "c"))
    assert one.returncode == 2 and "at least two run folders" in one.stderr


def test_the_built_split_follows_world_images(tmp_path):
    small = evaluate(EvalConfig(benchmark="world", world_images=2, max_new_tokens=4), tmp_path, log=lambda *_: None)
    split = tmp_path / "eval-split" / "records.jsonl"
    lines = len(split.read_text().splitlines())
    evaluate(EvalConfig(benchmark="world", world_images=3, max_new_tokens=4), tmp_path, log=lambda *_: None)
    assert len(split.read_text().splitlines()) > lines  # rebuilt with 3 scenes, not the 2-scene split reused
    assert small["benchmark"] == "world"


def quiet(*_):
    pass


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_world_runs_through_the_runner_journalled_and_viewable(tmp_path):
    """The world is a normal benchmark: its answers are journalled (a second run asks the model nothing) and its
    items, with their images, open in `vlpref view`."""
    config = EvalConfig(benchmark="world", world_images=2, max_new_tokens=4)
    first = evaluate(config, tmp_path / "run", log=quiet)
    generated = first["calls"]["answers_generated"]
    assert generated > 0 and first["calls"]["answers_cached"] == 0
    again = evaluate(config, tmp_path / "run", log=quiet)
    assert again["calls"]["answers_generated"] == 0 and again["calls"]["answers_cached"] == generated
    assert {k: v for k, v in again.items() if k != "calls"} == {k: v for k, v in first.items() if k != "calls"}

    items = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    short = [item for item in items if item["task"] in ("color", "size", "position", "count")]
    assert {item["task"] for item in items} - {"describe", "pope"} == {item["task"] for item in short}
    assert len(short) == 2 and {item["helpfulness"] for item in short} <= {1, 2, 5}  # one short question per scene
    assert first["qa_helpfulness"] == pytest.approx(sum(item["helpfulness"] for item in short) / 2)
    assert all(item["answer"] and Path(item["images"][0]).is_file() for item in items)
    assert first["data_folder"] == str((tmp_path / "run" / "eval-split").absolute())
    for split in ("random", "popular", "adversarial"):  # the items carry the verdicts the accuracy counts
        rows = [item for item in items if item["task"] == "pope" and item["split"] == split]
        assert all(item["correct"] == (item["parsed"] == item["reference"]) for item in rows)
        assert first[f"pope_accuracy_{split}"] == pytest.approx(sum(item["correct"] for item in rows) / len(rows))
    described = [item for item in items if item["task"] == "describe"]
    assert len(described) == 2 and all(1 <= item["faithfulness"] <= 5 for item in described)
    assert first["faithfulness"] == pytest.approx(sum(item["faithfulness"] for item in described) / 2)

    with serve_in_thread(build_app([tmp_path / "run"], log=quiet)) as url:
        base = url.removesuffix("/v1")
        status, page = get(base + "/")
        assert status == 200 and f"{len(items)} items".encode() in page
        assert get(base + "/item/0")[0] == 200
        status, image = get(base + "/image/item/0/0/0")  # served from the split the run built
        assert status == 200 and image.startswith(b"\x89PNG")


def test_evaluate_world_is_the_runners_world_benchmark(tmp_path):
    """The entry point the demo and `vlpref world eval` call gives the runner's numbers, from a loaded model or a
    model name; with a run folder it is journalled like any run."""
    from vlpref.evaluation.run import RUN_KEYS
    from vlpref.evaluation.world import SPLIT_TASKS, evaluate_world
    from vlpref.models.names import resolve_model
    from vlpref.models.vlm import VLM
    from vlpref.world.tasks import build_split

    split = tmp_path / "split"
    build_split(split, "eval", 2, tasks=SPLIT_TASKS)
    run = evaluate(EvalConfig(benchmark="world", data=str(split), max_new_tokens=4, device="cpu"), tmp_path / "run",
                   log=quiet)
    vlm = VLM.load(resolve_model("world:world-base"))
    metrics = evaluate_world(vlm, split, max_new_tokens=4, oracle=True)
    assert metrics == {k: v for k, v in run.items() if k not in RUN_KEYS}
    plain = evaluate_world(vlm, split, max_new_tokens=4)  # the oracle's ratings only when asked for
    assert "qa_helpfulness" in metrics
    assert plain == {k: v for k, v in metrics.items() if k not in ("helpfulness", "faithfulness", "qa_helpfulness")}
    for _ in range(2):
        assert evaluate_world("world:world-base", split, tmp_path / "kept", max_new_tokens=4, device="cpu") == plain
    assert json.loads((tmp_path / "kept" / "results.json").read_text())["calls"]["answers_generated"] == 0


def test_eval_benchmark_world_is_the_same_entry_point(tmp_path):
    """`vlpref eval --benchmark world --images N` builds N scenes (never a folder named N), prints the results on
    stdout and its progress (count, rate, ETA) on stderr, like `vlpref eval world`."""
    out = vlpref("eval", "--benchmark", "world", "--images", "2", "--max-new-tokens", "4", "--out", str(tmp_path / "w"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["benchmark"] == "world"
    assert json.loads((tmp_path / "w" / "eval-split.json").read_text()) == {"images": 2,
                                                                           "tasks": ["describe", "pope", "qa"]}
    assert re.search(r"answered \d+/\d+ \(0 from the journal\), [\d.]+/s, ETA \d+:\d\d", out.stderr)
    assert (tmp_path / "w" / "items.jsonl").read_text().count("\n") > 2
    word = vlpref("eval", "--benchmark", "world", "--images", "two", "--out", str(tmp_path / "x"))
    assert word.returncode == 2 and "--images: world takes the number of scenes" in word.stderr
    assert "Traceback" not in word.stderr and not (tmp_path / "x").exists()
    zero = vlpref("world", "eval", "--images", "0", "--out", str(tmp_path / "z"))
    assert zero.returncode == 2 and "--images: world takes the number of scenes" in zero.stderr
    assert "Traceback" not in zero.stderr


def test_progress_gives_count_rate_and_eta():
    from vlpref.evaluation.run import progress

    assert progress(64, 300, 8.0, "12 from the journal") == "answered 64/300 (12 from the journal), 8/s, ETA 0:30"
    assert progress(1, 5000, 1.0).endswith("ETA 1:23:19")
    assert progress(3, 3, 0.0).endswith("ETA 0:00")


def test_compare_refuses_runs_on_different_data_and_gives_intervals(tmp_path):
    """The same model on two eval splits is not a comparison of models: refused, or with the option compared under
    a warning. Each delta of a share carries the normal-approximation interval of its n."""
    from vlpref.evaluation.report import compare

    for name, images in (("two", 2), ("three", 3)):
        evaluate(EvalConfig(benchmark="world", world_images=images, max_new_tokens=4), tmp_path / name, log=quiet)
    with pytest.raises(VlprefError, match=r"different data: two \(\d+ questions, .*three .*--allow-different-data"):
        compare([tmp_path / "two", tmp_path / "three"], tmp_path / "cmp")
    warned = []
    table = compare([tmp_path / "two", tmp_path / "three"], tmp_path / "cmp", allow_different_data=True,
                    warn=warned.append)
    assert table.startswith("**WARNING: the runs were evaluated on different data") and len(warned) == 1
    runs = [json.loads((tmp_path / n / "results.json").read_text()) for n in ("two", "three")]
    items = [[json.loads(x) for x in (tmp_path / n / "items.jsonl").read_text().splitlines()] for n in ("two", "three")]
    counts = [sum(i["task"] == "pope" and i["split"] == "random" for i in run) for run in items]
    p1, p2 = (r["pope_accuracy_random"] for r in runs)
    half = 1.959964 * math.sqrt(p1 * (1 - p1) / counts[0] + p2 * (1 - p2) / counts[1])
    row = next(line for line in table.splitlines() if line.startswith("| pope_accuracy_random |"))
    assert row == (f"| pope_accuracy_random | {counts[0]}/{counts[1]} | {p1:.4g} | {p2:.4g} ({p2 - p1:+.3g} ± "
                   f"{half:.2g}) |")
    helpful = next(line for line in table.splitlines() if line.startswith("| helpfulness |"))
    assert "±" not in helpful  # a 1-5 rating is not a share: no interval
    assert not any(line.startswith(("| calls/", "| eval_data/")) for line in table.splitlines())
    # a run with no record of its data (scored elsewhere, or older) is compared with a warning, not refused
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps({k: v for k, v in runs[0].items() if k != "eval_data"}))
    assert "old: no record of the eval data" in compare([tmp_path / "two", tmp_path / "old"], tmp_path / "c2")


def test_short_questions_one_per_scene_and_their_helpfulness_by_hand(tmp_path):
    """One attribute / count / position question per scene, the same draw every time; `qa_helpfulness` is the
    oracle's mean Helpfulness over their answers: 5 right, 1 wrong, 2 not answered (hand math: (5 + 1 + 2) / 3)."""
    from vlpref.evaluation.world import short_questions
    from vlpref.world.metrics import world_metrics
    from vlpref.world.tasks import build_split

    prompts = build_split(tmp_path / "s", "eval", 3, tasks=("describe", "pope", "qa"))
    short = short_questions(prompts)
    assert short == short_questions(list(prompts))  # drawn by scene id: the same list again
    assert [p.meta["scene"]["id"] for p in short] == sorted({p.meta["scene"]["id"] for p in prompts})
    assert {p.meta["task"] for p in short} <= {"color", "size", "position", "count"}
    assert short_questions([p for p in prompts if p.meta["task"] in ("describe", "pope")]) == []
    color = next(p for p in prompts if p.meta["task"] == "color")
    other = next(c for c in ("red", "blue", "green", "yellow", "purple") if c != color.meta["answer"])
    category = color.meta["category"]
    replies = [color.reference, f"the {category} is {other}.", "it"]
    results, items = world_metrics([], [], [], [], oracle=True, questions=[color, color, color], replies=replies)
    assert results["qa_helpfulness"] == pytest.approx((5 + 1 + 2) / 3)
    assert items[color.id]["reference"] == color.reference
    with pytest.raises(ValueError, match="3 short questions but 2 replies"):
        world_metrics([], [], [], [], oracle=True, questions=[color] * 3, replies=replies[:2])
