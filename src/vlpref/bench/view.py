"""`vlpref bench view`: the viewer on a large synthetic pairs dataset: index build, page and filter times, memory.

    vlpref bench view --pairs 400000 --json runs/bench-view.json

The dataset is written as vlpref's pairs JSONL (~400 bytes a pair: a prompt, two ~20-word responses, three
aspect scores a side, provenance), with a matching annotations file. Timings are medians of 5 requests of the
index (no HTTP); `rss_mb` is the process's resident memory after the index is open, against the JSONL's size.
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from vlpref.view.index import Filters, PairIndex

WORDS = ("a red circle blue square green triangle small large near the top left right bottom of picture there is "
         "one two three object shape").split()


def _write(root: Path, n: int, seed: int) -> int:
    rng = random.Random(seed)
    pairs, annotations = root / "pairs", root / "annotations"
    pairs.mkdir(parents=True)
    annotations.mkdir()
    (annotations / "meta.json").write_text(json.dumps({"kind": "annotations"}))
    (pairs / "meta.json").write_text(json.dumps({"kind": "pairs", "annotations": str(annotations)}))
    with (pairs / "records.jsonl").open("w") as p, (annotations / "records.jsonl").open("w") as a:
        for i in range(n):
            texts = [" ".join(rng.choices(WORDS, k=20)) for _ in range(2)]
            scores = [{k: float(rng.randint(1, 5)) for k in ("Helpfulness", "Visual Faithfulness", "Ethics")}
                      for _ in range(2)]
            p.write(json.dumps({"id": f"p{i}", "prompt_id": f"q{i}", "images": [f"images/{i % 1000}.png"],
                                "turns": [{"role": "user", "text": "<image>\nDescribe the picture."}],
                                "chosen": texts[0], "rejected": texts[1], "chosen_scores": scores[0],
                                "rejected_scores": scores[1], "strategy": ("vlfeedback-mean", "povid-inject")[i % 2],
                                "provenance": {"chosen": f"q{i}/a", "rejected": f"q{i}/b"}}) + "\n")
            for side, text, s in (("a", texts[0], scores[0]), ("b", texts[1], scores[1])):
                a.write(json.dumps({"candidate_id": f"q{i}/{side}", "prompt_id": f"q{i}", "judge_id": "j",
                                    "rubric": "vlfeedback", "raw": text,
                                    "aspects": {k: {"score": v, "rationale": "ok"} for k, v in s.items()},
                                    "parse_status": "ok" if i % 97 else "partial"}) + "\n")
    return (pairs / "records.jsonl").stat().st_size


def _median_ms(call, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_view(pairs: int = 400_000, seed: int = 0) -> dict:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["VLPREF_VIEW_CACHE"] = str(root / "cache")
        start = time.perf_counter()
        size = _write(root, pairs, seed)
        written_s = time.perf_counter() - start
        start = time.perf_counter()
        index = PairIndex.open(root / "pairs", log=lambda *_: None)
        index_s = time.perf_counter() - start
        start = time.perf_counter()
        index = PairIndex.open(root / "pairs", log=lambda *_: None)
        reopen_ms = (time.perf_counter() - start) * 1000
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        last = (pairs - 1) // 50
        result = {
            "pairs": pairs, "jsonl_mb": round(size / 2**20, 1), "write_s": round(written_s, 1),
            "index_build_s": round(index_s, 1), "reopen_ms": round(reopen_ms, 1),
            "first_page_ms": round(_median_ms(lambda: index.page(Filters(), 0, 50)), 2),
            "last_page_ms": round(_median_ms(lambda: index.page(Filters(), last, 50)), 2),
            "strategy_filter_ms": round(_median_ms(lambda: index.page(Filters(strategy="povid-inject"), 100, 50)), 1),
            "margin_filter_ms": round(_median_ms(lambda: index.page(Filters(min_margin=2.0), 0, 50)), 1),
            "parse_failure_filter_ms": round(_median_ms(lambda: index.page(Filters(parse_failures=True), 0, 50)), 1),
            "text_search_ms": round(_median_ms(lambda: index.page(Filters(search="GREEN TRIANGLE"), 0, 50)), 1),
            "open_pair_ms": round(_median_ms(lambda: (index.row(pairs // 2),
                                                      index.annotation(f"q{pairs // 2}/a"))), 1),
            "peak_rss_mb": round(rss_mb, 1),
        }
        del os.environ["VLPREF_VIEW_CACHE"]
        return result
