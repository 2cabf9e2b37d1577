"""SIGKILL at 20 seeded points across `vlpref sample`, `judge`, `pairs`, `train` and `eval`, then rerun: the output
equals an uninterrupted run's, no record is duplicated or lost, no finished item is requested again from the
endpoint, and training's losses after resume equal the uninterrupted ones (CPU)."""

from __future__ import annotations

import json
import random
import re

from PIL import Image

from tests.reliability.harness import (
    FIGURES,
    LONG,
    VLPREF,
    ScriptedEndpoint,
    journal_rows,
    kill_serially,
    log_lines,
    run,
    same_records,
    write_yaml,
)
from vlpref.data.schema import Candidate, Prompt, Turn
from vlpref.data.store import write_records
from vlpref.serve import build_app, serve_in_thread
from vlpref.world.tasks import build_split

RNG = random.Random(20261122)  # the kill points of the whole module, drawn in test order


def points(first: int, last: int, n: int) -> list[int]:
    """n increasing kill points in [first, last], one drawn from each of n equal stretches (so each rerun has
    work left before its point)."""
    n = 2 * n if LONG else n
    FIGURES["kill_points_drawn"] += n
    width = (last - first) / n
    return [int(first + width * k + RNG.random() * width * 0.8) for k in range(n)]




def test_sample(tmp_path):
    prompts = tmp_path / "prompts"
    build_split(prompts, "prefs", 6, tasks=("describe", "qa"))
    recipe = write_yaml(tmp_path / "sample.yaml", {"prompts": str(prompts), "pool": [
        {"model": "world:world-early", "n": 2, "batch_size": 2, "decoding": {"temperature": 1.0,
                                                                             "max_new_tokens": 24}}]})
    total = 2 * len((prompts / "records.jsonl").read_text().splitlines())
    out = tmp_path / "killed"
    cmd = [*VLPREF, "sample", "--config", str(recipe), "--out", str(out)]
    kill_serially(cmd, lambda: journal_rows(out / "journal.sqlite"), points(2, total - 4, 4))
    run([*VLPREF, "sample", "--config", str(recipe), "--out", str(tmp_path / "whole")])
    same_records(out, tmp_path / "whole")


def judge_reply(text: str, tag: str) -> str:
    """VLFeedback's three aspects for every text of the request; the tag rides in each rationale."""
    texts = re.findall(r"^- <text (\d+)> ", text.split("## Annotation")[1], re.MULTILINE)
    blocks = []
    for aspect in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness"):
        blocks.append(f"#### {aspect} Assessment")
        blocks += [f"##### Output for Text {k}\nRating: {3 + int(k) % 2}\nRationale: fine #{tag}" for k in texts]
    return "\n".join(blocks)


def test_judge_over_http(tmp_path):
    prompts, cands = tmp_path / "prompts", tmp_path / "cands"
    (prompts / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(prompts / "images" / "a.png")
    items = [Prompt(id=f"p{i:02d}", images=["images/a.png"], turns=[Turn(role="user", text=f"<image>\nQuestion {i}?")])
             for i in range(40)]
    write_records(prompts, "prompts", items)
    write_records(cands, "candidates", [Candidate(id=f"{p.id}/m/{k}", prompt_id=p.id, model_id="m", text=t)
                                        for p in items for k, t in enumerate(["A red square.", "A dog."])],
                  prompts=str(prompts))
    endpoint = ScriptedEndpoint(judge_reply, delay=0.04)
    with serve_in_thread(build_app("judge", endpoint, max_batch=2)) as url:
        config = write_yaml(tmp_path / "judge.yaml", {"backend": "openai", "structured": "off", "endpoint": {
            "base_url": url, "model": "judge", "api_key_env": None, "concurrency": 2, "max_retries": 0}})
        out = tmp_path / "killed"
        cmd = [*VLPREF, "judge", "--config", str(config), "--candidates", str(cands), "--out", str(out)]
        kill_serially(cmd, lambda: journal_rows(out / "journal.sqlite"), points(2, 36, 5), endpoint,
                      journal=out / "journal.sqlite")
        run([*VLPREF, "judge", "--config", str(config), "--candidates", str(cands), "--out", str(tmp_path / "whole")])
    same_records(out, tmp_path / "whole")


def test_pairs_with_a_chat_injector(tmp_path):
    prompts = tmp_path / "prompts"
    build_split(prompts, "prefs", 8, tasks=("describe", "pope"))

    def rewrite(text: str, tag: str) -> str:
        answer = re.search(r"Correct answer: (.*)", text).group(1)
        return f'"{answer} There is also a knife. #{tag}"'

    endpoint = ScriptedEndpoint(rewrite, delay=0.04)
    with serve_in_thread(build_app("rewriter", endpoint, max_batch=2)) as url:
        config = write_yaml(tmp_path / "pairs.yaml", {
            "strategy": "povid", "prompts": str(prompts), "injection_kinds": ["object", "relation"],
            "injector": {"backend": "openai", "endpoint": {"base_url": url, "model": "rewriter", "api_key_env": None,
                                                          "concurrency": 2, "max_retries": 0}}})
        out = tmp_path / "killed"
        cmd = [*VLPREF, "pairs", "--config", str(config), "--out", str(out)]
        run([*VLPREF, "pairs", "--config", str(config), "--out", str(tmp_path / "whole")])
        total = journal_rows(tmp_path / "whole" / "journal.sqlite")
        assert total >= 12
        kill_serially(cmd, lambda: journal_rows(out / "journal.sqlite"), points(2, total - 3, 3), endpoint,
                      journal=out / "journal.sqlite")
    same_records(out, tmp_path / "whole")


def losses(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]


def test_train_resumes_to_the_uninterrupted_losses(tmp_path):
    from tests.training.conftest import make_pairs

    data = make_pairs(tmp_path / "pairs")
    config = write_yaml(tmp_path / "train.yaml", {
        "method": "dpo", "data": str(data), "model": "world:world-base", "finetune": "lora",
        "lora": {"r": 8, "alpha": 16},
        "lr": 1e-3, "batch_size": 2, "max_steps": 12, "save_every": 1, "seed": 3})
    out = tmp_path / "killed"
    cmd = [*VLPREF, "train", "--config", str(config), "--out", str(out)]
    kill_serially(cmd, lambda: log_lines(out / "log.jsonl"), points(2, 10, 3))
    run([*VLPREF, "train", "--config", str(config), "--out", str(tmp_path / "whole")])
    expected = losses(tmp_path / "whole")
    assert len(expected) == 12 and losses(out) == expected  # exactly, step for step
    FIGURES["training_steps_compared"] += len(expected)


def pope_fixture(root, n: int = 12) -> None:
    (root / "val2014").mkdir(parents=True)
    for k in range(4):
        Image.new("RGB", (32, 32), (60 * k, 200 - 40 * k, 90)).save(root / "val2014" / f"{k}.jpg")
    objects = ["dog", "cat", "car", "bus", "cup", "tie", "kite", "bed", "cow", "sheep", "boat", "clock"]
    for split in ("random", "popular"):
        rows = [{"question_id": i + 1, "image": f"{i % 4}.jpg", "label": "yes" if i % 2 else "no",
                 "text": f"Is there a {objects[i]} in the image{'' if split == 'random' else ' at all'}?"}
                for i in range(n)]
        (root / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_eval_pope(tmp_path):
    pope_fixture(tmp_path / "pope")
    args = ["--benchmark", "pope", "--data", str(tmp_path / "pope"), "--batch-size", "2", "--max-new-tokens", "12"]
    out = tmp_path / "killed"
    kills = kill_serially([*VLPREF, "eval", *args, "--out", str(out)], lambda: journal_rows(out / "journal.sqlite"),
                          points(2, 20, 3))
    run([*VLPREF, "eval", *args, "--out", str(tmp_path / "whole")])
    killed, whole = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "whole"))
    assert killed["splits"] == whole["splits"]
    # the last run generated exactly the answers the journal lacked after the last kill, and no other
    assert killed["calls"]["answers_generated"] == 24 - kills[-2]["progress"]
    for split in ("random", "popular"):
        same_records(out / "answers", tmp_path / "whole" / "answers", f"{split}.jsonl")


def test_eval_judged(tmp_path):
    root = tmp_path / "mmhal"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), (10, 120, 200)).save(root / "images" / "x.jpg")
    types = ("attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic", "other")
    records = [{"question_type": types[i % 8], "image_id": str(i), "image_src": "http://h/x.jpg",
                "image_content": ["Cat"], "question": f"What is shown ({i})?", "gt_answer": "A cat.",
                "model_answer": ""} for i in range(16)]
    (root / "response_template.json").write_text(json.dumps(records))
    endpoint = ScriptedEndpoint(lambda text, tag: f"Fine.\nRating: {len(text) % 7} #{tag}", delay=0.05)
    with serve_in_thread(build_app("judge", endpoint, max_batch=2)) as url:
        args = ["--benchmark", "mmhal", "--data", str(root), "--max-new-tokens", "4", "--batch-size", "4",
                "--judge-url", url, "--judge-model", "judge", "--judge-key-env", "VLPREF_NO_KEY"]
        out = tmp_path / "killed"
        # 16 answers go into the journal first, then the 16 judge replies: the kills land while judging
        kill_serially([*VLPREF, "eval", *args, "--out", str(out)], lambda: journal_rows(out / "journal.sqlite"),
                      points(18, 30, 2), endpoint, journal=out / "journal.sqlite")
        run([*VLPREF, "eval", *args, "--out", str(tmp_path / "whole")])
    killed, whole = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "whole"))
    assert killed["average"] == whole["average"] and killed["per_type"] == whole["per_type"]
    assert (out / "evaluation.json").read_text() == (tmp_path / "whole" / "evaluation.json").read_text()

