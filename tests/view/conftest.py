"""Fixtures for the viewer: a pairs dataset and two evaluation runs whose texts carry script-injection payloads, the
viewer served on a free local port, and headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vlpref.data.schema import Annotation, AspectScore, PreferencePair, Turn
from vlpref.data.store import write_records
from vlpref.serve import serve_in_thread

# Each would run script if it reached the page as markup; `window.__pwned` is set by any that runs.
PAYLOADS = ["<script>window.__pwned = 1</script>", '<img src=x onerror="window.__pwned = 2">',
            '"><svg onload="window.__pwned = 3">', "</textarea><iframe srcdoc='<script>parent.__pwned=4</script>'>"]
COLORS = [(220, 40, 40), (40, 160, 60), (40, 70, 220)]


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory) -> Path:
    """130 pairs in two strategies (3 pages of 50), margins 0-2, payloads in texts and rationales, parse failures."""
    root = tmp_path_factory.mktemp("view")
    prompts, pairs_root, annotations_root = root / "prompts", root / "pairs", root / "annotations"
    (prompts / "images").mkdir(parents=True)
    for k, color in enumerate(COLORS):
        Image.new("RGB", (48, 48), color).save(prompts / "images" / f"c{k}.png")
    pairs, annotations = [], []
    for i in range(130):
        payload = PAYLOADS[i % len(PAYLOADS)]
        strategy = "vlfeedback-mean" if i % 3 else "povid-inject"
        chosen, rejected = f"a red circle near the top {i}", f"a blue square near the top {payload}"
        scores_c = {"Helpfulness": 4.0 + (i % 2), "Visual Faithfulness": 5.0}
        scores_r = {"Helpfulness": 4.0 - i % 3, "Visual Faithfulness": 3.0}
        pairs.append(PreferencePair(
            id=f"pair-{i:03d}", prompt_id=f"q{i}", images=[f"images/c{i % 3}.png"],
            turns=[Turn(role="user", text=f"<image>\nDescribe the picture {i}. {payload}")],
            chosen=chosen, rejected=rejected, chosen_scores=scores_c if strategy != "povid-inject" else {},
            rejected_scores=scores_r if strategy != "povid-inject" else {}, strategy=strategy,
            provenance={"chosen": f"q{i}/m/0", "rejected": f"q{i}/m/1", "note": payload}))
        for k, (scores, text) in enumerate(((scores_c, chosen), (scores_r, rejected))):
            status = "failed" if i % 10 == 7 and k == 1 else "ok"
            annotations.append(Annotation(
                candidate_id=f"q{i}/m/{k}", prompt_id=f"q{i}", judge_id="judge", rubric="vlfeedback",
                aspects={a: AspectScore(score=s if status == "ok" else None, rationale=f"about {text} {payload}")
                         for a, s in scores.items()},
                raw=f"raw judge text {payload}", parse_status=status))
    write_records(annotations_root, "annotations", annotations)
    write_records(pairs_root, "pairs", pairs, images_from=prompts, annotations=str(annotations_root))
    return pairs_root


@pytest.fixture(scope="session")
def eval_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two POPE runs of scripted models over the same questions: 'base' and 'tuned' answer some differently, and
    one answer carries a payload."""
    from vlpref.evaluation import run as run_module
    from vlpref.evaluation.run import EvalConfig, evaluate
    from vlpref.models.vlm import Generation

    root = tmp_path_factory.mktemp("evalview")
    data = root / "pope"
    (data / "val2014").mkdir(parents=True)
    for k, color in enumerate(COLORS):
        Image.new("RGB", (48, 48), color).save(data / "val2014" / f"{k}.jpg")
    objects = ["dog", "cat", "car", "bus", "cup", "tie", "kite", "bed"]
    for split in ("random", "adversarial"):
        rows = [{"question_id": i + 1, "image": f"{i % 3}.jpg", "text": f"Is there a {o} in the image?",
                 "label": "yes" if i % 2 else "no"} for i, o in enumerate(objects)]
        (data / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Scripted:
        def __init__(self, tuned: bool):
            self.tuned = tuned

        def generate(self, chats, params, batch_size=8):
            out = []
            for chat in chats:
                text = chat.turns[-1].text
                n = sum(map(ord, text)) % 3
                answer = ["Yes.", "No, there is not.", PAYLOADS[1]][n] if not self.tuned else ["No.", "Yes."][n % 2]
                out.append(Generation(text=answer, token_ids=[1], finish_reason="stop"))
            return out

    runs = []
    for name, tuned in (("base", False), ("tuned", True)):
        original = run_module.Session.vlm
        run_module.Session.vlm = lambda self, tuned=tuned: Scripted(tuned)
        try:
            evaluate(EvalConfig(benchmark="pope", data=str(data)), root / name, log=lambda *_: None)
        finally:
            run_module.Session.vlm = original
        runs.append(root / name)
    return runs[0], runs[1]


@pytest.fixture
def serve_viewer(tmp_path, monkeypatch):
    """serve_viewer(paths) -> the viewer's base URL (index cache in tmp)."""
    from contextlib import ExitStack

    from vlpref.view.app import build_app

    monkeypatch.setenv("VLPREF_VIEW_CACHE", str(tmp_path / "cache"))
    stack = ExitStack()

    def start(paths):
        url = stack.enter_context(serve_in_thread(build_app(paths, log=lambda *_: None)))
        return url.removesuffix("/v1")

    yield start
    stack.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's `chromium`, or CHROMIUM=path) through Playwright. `make test` installs both.
    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open, which would
    break every later test that calls asyncio.run (the HTTP clients)."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        if os.environ.get("VLPREF_BROWSER_TESTS") == "skip":
            pytest.skip("browser tests turned off (VLPREF_BROWSER_TESTS=skip)")
        pytest.fail("the viewer's browser tests need Chromium and Playwright: `make test` installs them "
                    "(apt-get install chromium; pip install playwright); VLPREF_BROWSER_TESTS=skip turns them off")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page, tmp_path: Path, name: str) -> Path:
    """Always to tmp (checked to be a real image); to docs/screenshots when VLPREF_UPDATE_SCREENSHOTS=1."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("VLPREF_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / f"{name}.png")
    return path
