"""`vlpref eval score`: official scores for answers (and judge outputs) made by any tool, from the official layouts.

    vlpref eval score --benchmark mme --answers eval_tool/Your_Results --out runs/mme-score
    vlpref eval score --benchmark pope --answers answers.jsonl --labels coco_pope_random.json \\
        --labels coco_pope_popular.json --labels coco_pope_adversarial.json --out runs/pope-score

Users switching from LLaVA's scripts, lmms-eval or VLMEvalKit point it at the files those tools write and get the
numbers the official scripts would print (the scoring rules live in `vlpref.evaluation.scoring`, their tests in
tests/evaluation/scoring):

- `mme`: --answers, the results folder (one `<subtask>.txt` per subtask: image, question, truth, answer; TABs);
- `pope`: --answers, a JSONL of `question_id` + `text` (LLaVA's `model_vqa_loader` layout), and --labels, the
  official question file of each split (`coco_pope_<split>.json`, JSON lines with `question_id` and `label`);
- `mmhal`: --answers, the response template filled with `model_answer` (JSON); --judge, the evaluation file (JSON);
- `mmvet`: --judge, the evaluator's grade file (JSON, a score list per sample); --metadata, `mm-vet.json`;
- `llava-bench`: --judge, the review JSONL;
- `mtbench`: --judge, FastChat's judgment JSONL (`gpt-4_single.jsonl`);
- `amber` (discriminative): --answers, the response JSON (`[{"id", "response"}]`); --metadata, the annotations.
- `chair`: --answers, captions as JSON lines or a JSON list of `{"image_id", "caption"}` (the standalone scorer's
  input); --metadata, the folder with COCO 2014's instances_* and captions_* files. Each variant whose tools are
  installed is scored (NLTK for lemmatize; NLTK and pattern for singularize); the others are listed with the reason.

`score` returns the numbers; the command writes them to OUT/results.json, results.md and results.png. Answers that
do not match the question set (missing or unknown ids, a different count) are errors naming the file and the ids;
unparseable answers and judge outputs are counted in the results, never silently scored as zero.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from vlpref.data.files import read_json, read_jsonl
from vlpref.errors import VlprefError

BENCHMARKS = ("mme", "pope", "chair", "mmhal", "mmvet", "llava-bench", "mtbench", "amber")


def _need(path: Path | None, option: str, benchmark: str) -> Path:
    if path is None:
        raise VlprefError(f"{benchmark}: {option} is required (see `vlpref eval score --help`)")
    if not path.exists():
        raise VlprefError(f"{benchmark}: {option} {path} does not exist")
    return path


def _json(path: Path):
    return read_json(path, "file")


def _jsonl(path: Path) -> list[dict]:
    return read_jsonl(path, "file")


def score_pope(answers: Path, labels: list[Path]) -> dict:
    """Per split: the official first-sentence parser over the answers whose ids are in that split's question file."""
    from vlpref.evaluation.scoring.pope import pope_answer, pope_metrics

    by_id = {}
    for number, row in enumerate(_jsonl(answers), start=1):
        if "question_id" not in row or "text" not in row:
            raise VlprefError(f"{answers}, line {number}: an answer needs `question_id` and `text`")
        if row["question_id"] in by_id:  # the official question files number each split from 1
            raise VlprefError(f"{answers}, line {number}: question_id {row['question_id']!r} appears twice; the "
                              "splits share ids, so score one split's answers with its own question file")
        by_id[row["question_id"]] = row["text"]
    results, used = {}, set()
    for path in labels:
        questions = _jsonl(path)
        missing = [q["question_id"] for q in questions if q["question_id"] not in by_id]
        if missing:
            raise VlprefError(f"{answers}: no answer for {len(missing)} question(s) of {path} "
                              f"(first ids: {missing[:5]})")
        split = re.sub(r"^coco_pope_|\.jsonl?$", "", path.name)
        ids = [q["question_id"] for q in questions]
        used.update(ids)
        results[split] = pope_metrics([pope_answer(by_id[i]) for i in ids], [q["label"] for q in questions])
    unknown = sorted(set(by_id) - used, key=str)
    if unknown:
        raise VlprefError(f"{answers}: {len(unknown)} answer(s) match no question of the label files "
                          f"(first ids: {unknown[:5]}); pass every split's question file")
    return results


def score_chair(answers: Path, annotations: Path) -> dict:
    """CHAIR of given captions against COCO's annotation files, in every variant whose tools are installed."""
    from vlpref.evaluation.chair import ANNOTATIONS
    from vlpref.evaluation.scoring import coco_chair

    text = answers.read_text(encoding="utf-8").lstrip()
    rows = _json(answers) if text.startswith("[") else _jsonl(answers)
    captions = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("image_id"), int) or not isinstance(
                row.get("caption"), str):
            raise VlprefError(f"{answers}, record {number}: needs an integer `image_id` and a string `caption`")
        captions.append((row["image_id"], row["caption"]))
    folder = annotations / "annotations" if (annotations / "annotations").is_dir() else annotations
    missing = [name for name in ANNOTATIONS if not (folder / name).is_file()]
    if missing:
        raise VlprefError(f"chair: {folder} lacks {', '.join(missing)} (COCO's annotations_trainval2014.zip)")
    results: dict = {"images": len(captions), "skipped": {}}
    data = None
    for variant in coco_chair.VARIANTS:
        try:
            words = coco_chair.nltk_tools(variant)
        except RuntimeError as error:
            results["skipped"][variant] = str(error)
            continue
        data = data or {name: _json(folder / name) for name in ANNOTATIONS}
        truth = words.truth([data[n] for n in ANNOTATIONS[:2]], [data[n] for n in ANNOTATIONS[2:]],
                            [i for i, _ in captions])
        results[variant] = coco_chair.coco_chair(words, captions, truth)
        results[variant].pop("hallucinated")
    if all(v in results["skipped"] for v in coco_chair.VARIANTS):
        raise VlprefError("chair: no variant can run: " + "; ".join(results["skipped"].values()))
    return results


def score(benchmark: str, answers: Path | None = None, judge: Path | None = None, labels: list[Path] | None = None,
          metadata: Path | None = None) -> dict:
    """The official scores of `benchmark` from the given files (see the module docstring for which it needs)."""
    from vlpref.evaluation.scoring import amber, llava_bench, mme, mmhal, mmvet, mtbench

    runners: dict[str, Callable[[], dict]] = {
        "mme": lambda: mme.score_mme_results(_need(answers, "--answers", benchmark)),
        "pope": lambda: score_pope(_need(answers, "--answers", benchmark),
                                   [_need(p, "--labels", benchmark) for p in labels or [None]]),
        "mmhal": lambda: mmhal.score_mmhal_files(_need(answers, "--answers", benchmark),
                                                 _need(judge, "--judge", benchmark)),
        "mmvet": lambda: mmvet.mmvet_summary(mmvet.read_mmvet_metadata(_need(metadata, "--metadata", benchmark)),
                                             mmvet.read_mmvet_grades(_need(judge, "--judge", benchmark))),
        "llava-bench": lambda: llava_bench.summarize(_jsonl(_need(judge, "--judge", benchmark))),
        "mtbench": lambda: mtbench.mtbench_scores(_jsonl(_need(judge, "--judge", benchmark))),
        "chair": lambda: score_chair(_need(answers, "--answers", benchmark), _need(metadata, "--metadata", benchmark)),
        "amber": lambda: amber.amber_discriminative(_json(_need(answers, "--answers", benchmark)),
                                                    _json(_need(metadata, "--metadata", benchmark))),
    }
    if benchmark not in runners:
        raise VlprefError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    # A broken file is named before any scorer reads it. (POPE's question files are JSON lines named .json.)
    for path in (answers, judge, metadata, *(labels or [])):
        if path is not None and path.is_file() and path.suffix in (".json", ".jsonl"):
            if path.suffix == ".jsonl" or path.read_text(encoding="utf-8").lstrip().startswith("{\"question_id"):
                _jsonl(path)
            else:
                _json(path)
    try:
        return runners[benchmark]()
    except ValueError as error:  # the scorers' own input errors name the file, record and field
        raise VlprefError(f"{benchmark}: {error}") from None
