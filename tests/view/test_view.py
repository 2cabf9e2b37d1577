"""`vlpref view` in headless Chromium: load, filter, paginate, open an item, screenshot, for pairs, an evaluation
run and two runs side by side; no injected payload ever runs. Plus the HTTP guarantees: read-only, images only from
inside their roots, a Content-Security-Policy without scripts, escaped text."""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.view.conftest import PAYLOADS, screenshot


def get(url: str):
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def not_pwned(page) -> None:
    assert page.evaluate("window.__pwned") is None, "an injected payload ran"


def test_pairs_in_the_browser(browser, pairs_dir, serve_viewer, tmp_path):
    base = serve_viewer([pairs_dir])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(base + "/")
    assert page.inner_text("#count").startswith("130 matching · page 1 of 3")
    assert page.locator("tr.pair-row").count() == 50
    not_pwned(page)
    screenshot(page, tmp_path, "view-pairs")
    page.click("#next")  # paginate
    assert "page 2 of 3" in page.inner_text("#count")
    assert page.locator("tr.pair-row").first.inner_text().startswith("50")
    page.click("#next")
    assert page.locator("tr.pair-row").count() == 30 and page.locator("#next").count() == 0
    # filter: strategy + margin + text; every shown row satisfies them
    page.goto(base + "/")
    page.select_option("select[name=strategy]", "vlfeedback-mean")
    page.fill("input[name=margin]", "2")
    page.fill("input[name=q]", "CIRCLE NEAR")
    page.click("button[type=submit]")
    # vlfeedback pairs (i % 3 != 0) with margin mean(4 + i % 2, 5) - mean(4 - i % 3, 3) >= 2
    expected = sum(1 for i in range(130) if i % 3 and ((4 + i % 2 + 5) / 2 - (4 - i % 3 + 3) / 2) >= 2)
    assert page.inner_text("#count").startswith(f"{expected} matching")
    assert all("vlfeedback-mean" in text for text in page.locator("tr.pair-row td:nth-child(2)").all_inner_texts())
    page.goto(base + "/?failures=1")
    assert page.inner_text("#count").startswith("13 matching")  # i % 10 == 7: the rejected side failed to parse
    screenshot(page, tmp_path, "view-pairs-filtered")
    # open one pair: texts are shown as text, the payloads included, and none ran
    page.goto(base + "/")
    page.click("tr.pair-row >> nth=1 >> a")
    assert page.url.endswith("/pair/1")
    assert PAYLOADS[1] in page.inner_text("#rejected") and PAYLOADS[1] in page.inner_text("#prompt")
    assert page.locator("del").count() and page.locator("ins").count()  # the word diff
    assert page.locator("#scores tr").count() == 3  # header + two aspects
    assert PAYLOADS[1] in page.locator(".rationale").first.inner_text()
    image = page.locator("img.shown").first
    assert image.evaluate("img => img.complete && img.naturalWidth") == 48  # served from the dataset
    not_pwned(page)
    screenshot(page, tmp_path, "view-pair")
    page.goto(base + "/pair/3")  # '"><svg onload=...>' in the prompt, rationale and provenance
    not_pwned(page)
    assert page.locator("svg, iframe, script").count() == 0


def test_evaluation_runs_in_the_browser(browser, eval_runs, serve_viewer, tmp_path):
    base_run, tuned_run = eval_runs
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    one = serve_viewer([base_run])
    page.goto(one + "/")
    results = json.loads((base_run / "results.json").read_text())
    f1_row = page.locator("#results tr", has_text="splits/random/f1").first.inner_text()
    assert f"{results['splits']['random']['f1']:.4g}" in f1_row
    assert page.locator("img.plot").count() >= 2  # results.png and categories.png
    assert page.locator("img.plot").first.evaluate("img => img.naturalWidth") > 100
    assert page.inner_text("#count").startswith("16 items")
    not_pwned(page)
    screenshot(page, tmp_path, "view-run")
    page.check("input[name=wrong]")
    page.click("button[type=submit]")
    wrong = sum(1 for line in (base_run / "items.jsonl").read_text().splitlines() if not json.loads(line)["correct"])
    assert page.inner_text("#count").startswith(f"{wrong} items")
    page.click("tr.item-row >> nth=0 >> a")
    assert page.locator("#question").inner_text().startswith("Is there a")
    assert page.locator("img.shown").first.evaluate("img => img.complete && img.naturalWidth") == 48
    not_pwned(page)
    screenshot(page, tmp_path, "view-item")
    # two runs side by side: a delta column, both answers per item, and a word diff of the answers
    two = serve_viewer([base_run, tuned_run])
    page.goto(two + "/")
    assert page.locator("#results th").all_inner_texts()[-1] == "delta"
    page.check("input[name=wrong]")
    page.click("button[type=submit]")
    assert page.locator("tr.item-row").count() > 0
    page.click("tr.item-row >> nth=0 >> a")
    assert page.locator(".answer").count() == 2
    not_pwned(page)
    screenshot(page, tmp_path, "view-compare-item")
    page.goto(two + "/")
    screenshot(page, tmp_path, "view-compare")


def test_read_only_confined_and_scriptless(pairs_dir, eval_runs, serve_viewer, tmp_path):
    base = serve_viewer([pairs_dir])
    status, headers, body = get(base + "/")
    assert status == 200 and "script-src" not in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"<script>" not in body and b"&lt;script&gt;" in body and b"onerror=" not in body.replace(
        b"onerror=&#34;", b"")
    for path in ("/", "/pair/0", "/image/pair/0/chosen/0"):  # nothing can be written
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            request = urllib.request.Request(base + path, data=b"{}", method=method)
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(request)
            assert error.value.code == 405
    for path in ("/image/pair/0/chosen/1", "/image/pair/0/other/0", "/image/pair/999/chosen/0",
                 "/image/pair/0/chosen/..%2F..%2Fmeta.json", "/../meta.json", "/docs", "/openapi.json"):
        assert get(base + path)[0] in (404, 422), path


def test_image_paths_outside_the_root_are_refused(tmp_path, serve_viewer):
    """A records file edited to point outside its folder: the page still renders, the image is refused."""
    root = tmp_path / "pairs"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    record = {"id": "p", "prompt_id": "q", "images": ["../secret.png"], "turns": [{"role": "user",
              "text": "<image>\nhi"}], "chosen": "a", "rejected": "b", "strategy": "s"}
    (root / "records.jsonl").write_text(json.dumps(record) + "\n")
    (root / "meta.json").write_text(json.dumps({"kind": "pairs"}))
    base = serve_viewer([root])
    assert get(base + "/pair/0")[0] == 200
    assert get(base + "/image/pair/0/chosen/0")[0] == 404


def test_bad_paths_are_named(tmp_path):
    from vlpref.errors import VlprefError
    from vlpref.view.app import build_app

    with pytest.raises(VlprefError, match="is not a folder"):
        build_app([tmp_path / "missing"])
    with pytest.raises(VlprefError, match="not a pairs folder"):
        build_app([tmp_path])


def test_evaluation_images_only_from_the_runs_folders(eval_runs, serve_viewer, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(eval_runs[0], run)
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
    data = json.loads((run / "results.json").read_text())["data_folder"]
    items[0]["images"] = [f"{data}/../../secret.jpg"]
    items[1]["images"] = ["/etc/passwd"]
    (run / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    base = serve_viewer([run])
    assert get(base + "/image/item/0/0/0")[0] == 404
    assert get(base + "/image/item/0/1/0")[0] == 404
    assert get(base + "/image/item/0/2/0")[0] == 200  # an untouched item's image is served
    assert get(base + "/plot/0/../results.json")[0] == 404 and get(base + "/plot/0/results.json")[0] == 404


def test_a_run_made_with_a_relative_data_path_shows_its_images(eval_runs, serve_viewer, tmp_path, monkeypatch):
    """items.jsonl names images by absolute path, so the viewer finds them from any working directory."""
    from vlpref.evaluation import run as run_module
    from vlpref.evaluation.run import EvalConfig, evaluate
    from vlpref.models.vlm import Generation

    data = json.loads((eval_runs[0] / "results.json").read_text())["data_folder"]
    monkeypatch.chdir(Path(data).parent)

    class Yes:
        def generate(self, chats, params, batch_size=8):
            return [Generation(text="Yes", token_ids=[1], finish_reason="stop") for _ in chats]

    monkeypatch.setattr(run_module.Session, "vlm", lambda self: Yes())
    evaluate(EvalConfig(benchmark="pope", data=Path(data).name, limit=2), tmp_path / "rel", log=lambda *_: None)
    monkeypatch.chdir(tmp_path)
    base = serve_viewer([tmp_path / "rel"])
    assert get(base + "/image/item/0/0/0")[0] == 200


def test_only_local_host_names_are_answered(pairs_dir, serve_viewer):
    base = serve_viewer([pairs_dir])
    request = urllib.request.Request(base + "/", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as error:  # a DNS-rebinding page would send its own name
        urllib.request.urlopen(request)
    assert error.value.code == 400


def test_two_runs_are_matched_by_id_not_position(eval_runs, serve_viewer, tmp_path):
    import shutil

    second = tmp_path / "tuned"
    shutil.copytree(eval_runs[1], second)
    items = [json.loads(line) for line in (second / "items.jsonl").read_text().splitlines()]
    for item in items:  # an answer that names its own item, so a wrong pairing shows
        item["answer"] = f"answer to {item['id']}"
    lines = [json.dumps(item) for item in reversed(items)]  # the same items, the other way round
    (second / "items.jsonl").write_text("\n".join(lines) + "\n")
    base = serve_viewer([eval_runs[0], second])
    first_item = json.loads((eval_runs[0] / "items.jsonl").read_text().splitlines()[0])
    partner = next(json.loads(line) for line in lines if json.loads(line)["id"] == first_item["id"])
    status, _, body = get(base + "/item/0")
    page = body.decode()
    assert status == 200 and page.count('class="text answer"') == 2
    answers = re.findall(r'<div class="text answer">(.*?)</div>', page, re.S)
    assert html.unescape(answers[1]) == partner["answer"]


def test_a_broken_records_line_is_named(tmp_path, monkeypatch):
    from vlpref.errors import VlprefError
    from vlpref.view.app import build_app

    monkeypatch.setenv("VLPREF_VIEW_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "pairs"
    root.mkdir()
    (root / "meta.json").write_text(json.dumps({"kind": "pairs"}))
    (root / "records.jsonl").write_text('{"id": "a", "chosen": "x", "rejected": "y", "strategy": "s"}\n{"id": \n')
    with pytest.raises(VlprefError, match=r"records.jsonl, line 2: not valid JSON"):
        build_app([root], log=lambda *_: None)
    assert not list((tmp_path / "cache").glob("*"))  # no half-written index left behind
