"""`vlpref eval score`: official scores for answers (and judge outputs) made by any tool, from the official layouts.

    vlpref eval score --benchmark mme --answers eval_tool/Your_Results --out runs/mme-score
    vlpref eval score --benchmark pope --answers answers.jsonl --labels coco_pope_random.json \\
        --labels coco_pope_popular.json --labels coco_pope_adversarial.json --out runs/pope-score

Users switching from LLaVA's scripts, lmms-eval or VLMEvalKit point it at the files those tools write and get the
numbers the official scripts would print (the scoring rules live in `vlpref.evaluation.scoring`, their tests in
tests/evaluation/scoring):

- `mme`: --answers, the results folder (one `<subtask>.txt` per subtask: image, question, truth, answer; TABs);
- `pope`: --labels, the official question file of each split (`coco_pope_<split>.json`, JSON lines with
  `question_id` and `label`; repeat the option or give their folder), and --answers: a JSONL of `question_id` +
  `text` (LLaVA's `model_vqa_loader` layout) matched by id, the answers folder `vlpref eval` writes, or LLaVA's
  merged answer file of all three splits with --questions, its question file (`llava_pope_test.jsonl`). Where the
  answers carry their question (`prompt`), it must be the label file's question. --scoring lmms-eval scores as
  lmms-eval does. Results as `vlpref eval` gives them: `splits`, `f1_mean`, `pooled`;
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

import json
from collections.abc import Callable
from pathlib import Path

from vlpref.data.files import read_json, read_jsonl
from vlpref.errors import VlprefError

BENCHMARKS = ("mme", "pope", "chair", "mmhal", "mmvet", "llava-bench", "mtbench", "amber")


def json_lines(path: Path) -> bool:
    """Whether `path` is JSON Lines: its first non-blank line is a whole JSON value and more lines follow (or it is
    named .jsonl). Whatever the first record's keys (POPE's question files are JSON Lines named .json)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return path.suffix == ".jsonl"
    try:
        json.loads(lines[0])
    except json.JSONDecodeError:
        return False  # a JSON document spread over lines, or a broken file that `_json` will name
    return len(lines) > 1 or path.suffix == ".jsonl"


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


def _answer_rows(path: Path, what: str = "answer") -> list[tuple[int, dict]]:
    """(line number, row) of a POPE answer file in LLaVA's layout, each checked: `question_id` and a string `text`."""
    rows = []
    for number, row in enumerate(_jsonl(path), start=1):
        if not isinstance(row, dict) or "question_id" not in row or "text" not in row:
            raise VlprefError(f"{path}, line {number}: an {what} needs `question_id` and `text`")
        if not isinstance(row["text"], str):
            raise VlprefError(f"{path}, line {number}: question_id {row['question_id']!r}: `text` is "
                              f"{'null' if row['text'] is None else type(row['text']).__name__}, not the answer's "
                              "text (a failed generation?)")
        rows.append((number, row))
    return rows


def _label_files(labels: list[Path]) -> list[Path]:
    """The label files as given, a folder standing for the POPE files in it (LLaVA's --annotation-dir)."""
    from vlpref.evaluation.pope import _order

    files: list[Path] = []
    for path in labels:
        if path.is_dir():
            found = sorted(path.glob("*_pope_*.json"), key=lambda p: _order(p.stem))
            if not found:
                raise VlprefError(f"pope: --labels {path} holds no question files (*_pope_*.json)")
            files += found
        else:
            files.append(path)
    return files


def _question(text: str) -> str:
    """A prompt as the question it asks: its first line (LLaVA adds the answer instruction on a second), spaces
    collapsed, lower case."""
    return " ".join(text.strip().split("\n")[0].split()).lower()


def _same_questions(answers: Path, pairs: list[tuple[int, dict, dict]]) -> None:
    """Answers that carry their question's text (LLaVA's `prompt`) must ask what the label file asks: a file of
    answers to another split or dataset is an error, not a silent score."""
    wrong = [(number, answer, label) for number, answer, label in pairs
             if isinstance(answer.get("prompt"), str) and isinstance(label.get("text"), str)
             and _question(answer["prompt"]) != _question(label["text"])]
    if wrong:
        number, answer, label = wrong[0]
        raise VlprefError(f"{answers}, line {number}: question_id {answer['question_id']!r} answers "
                          f"{answer['prompt'].splitlines()[0]!r} but the label file asks {label['text']!r} "
                          f"({len(wrong)} of {len(pairs)} answers differ: answers to other questions, another split "
                          "or another version of the files?)")


def score_pope(answers: Path, labels: list[Path], questions: Path | None = None, scoring: str = "official") -> dict:
    """Per split: the answers to that split's label file (`coco_pope_<split>.json`), scored by the official
    first-sentence parser (or lmms-eval's exact match), plus `f1_mean` and `pooled` as `vlpref eval` reports them.

    `answers`: one JSONL matched by question_id (the question files number each split from 1, so one split's
    answers, or splits with disjoint ids); the folder `vlpref eval` writes (OUT/answers/<split>.jsonl); or LLaVA's
    merged file of all three splits, with `questions`, LLaVA's question file (llava_pope_test.jsonl), whose
    `category` names each answer's split: as LLaVA's eval_pope.py does, a split's answers are taken in file order
    against its label file's lines."""
    from vlpref.evaluation.pope import split_name
    from vlpref.evaluation.scoring.pope import f1_means, pope_answer, pope_metrics, pope_metrics_lmms_eval

    if scoring not in ("official", "lmms-eval"):
        raise VlprefError(f"pope: --scoring {scoring!r}: choose official or lmms-eval")
    files = _label_files(labels)
    per_split: dict[str, tuple[Path, list[tuple[int, dict, dict]]]] = {}  # split -> (label file, answer/label pairs)
    label_rows = {}
    for path in files:
        rows = _jsonl(path)
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or "question_id" not in row or "label" not in row:
                raise VlprefError(f"{path}, line {number}: a label needs `question_id` and `label`")
        if not rows:
            raise VlprefError(f"{path}: no questions")
        label_rows[split_name(path.stem)] = (path, rows)

    if answers.is_dir():  # what `vlpref eval` writes: OUT/answers/<split>.jsonl, each numbered from 1
        for split, (path, rows) in label_rows.items():
            file = answers / f"{split}.jsonl"
            if not file.is_file():
                raise VlprefError(f"pope: --answers {answers} has no {file.name} for {path.name}")
            per_split[split] = (file, _by_id(file, _answer_rows(file), path, rows))
    elif questions is not None:  # LLaVA's merged answers, split by its question file's `category`
        asked = {}
        for number, row in enumerate(_jsonl(questions), start=1):
            if not isinstance(row, dict) or "question_id" not in row or "category" not in row:
                raise VlprefError(f"{questions}, line {number}: a question needs `question_id` and `category`")
            asked[row["question_id"]] = row
        by_category: dict[str, list[tuple[int, dict]]] = {}
        for number, row in _answer_rows(answers):
            if row["question_id"] not in asked:
                raise VlprefError(f"{answers}, line {number}: question_id {row['question_id']!r} is not in "
                                  f"{questions}")
            by_category.setdefault(str(asked[row["question_id"]]["category"]), []).append((number, row))
        extra = sorted(set(by_category) - set(label_rows))
        if extra:
            raise VlprefError(f"{answers}: answers of categor{'ies' if len(extra) > 1 else 'y'} {', '.join(extra)} "
                              f"have no label file (coco_pope_<category>.json) among --labels")
        for split, (path, rows) in label_rows.items():
            got = by_category.get(split, [])
            if len(got) != len(rows):
                raise VlprefError(f"{answers}: {len(got)} answers of category {split!r} but {len(rows)} questions in "
                                  f"{path}; LLaVA pairs them line by line, so the counts must agree")
            # the question file's text stands for the answer's prompt where the answer lacks one
            pairs = [(n, {"prompt": asked[a["question_id"]].get("text"), **a}, label)
                     for (n, a), label in zip(got, rows, strict=True)]
            per_split[split] = (answers, pairs)
    else:
        rows = _answer_rows(answers)
        ids = [row["question_id"] for _, row in rows]
        if len(set(ids)) < len(ids):
            again = next(i for i in ids if ids.count(i) > 1)
            raise VlprefError(f"{answers}: question_id {again!r} appears twice; the splits number their questions "
                              "from 1, so score one split's answers with its own label file, the folder `vlpref eval` "
                              "writes, or LLaVA's merged file with its question file (--questions)")
        shared = _shared_ids(label_rows)
        if shared:
            raise VlprefError(f"pope: {shared}: one answer file matched by question_id cannot answer them all; score "
                              "one split at a time, or give the answers folder `vlpref eval` writes, or LLaVA's "
                              "merged file with its question file (--questions)")
        used: set = set()
        for split, (path, label_list) in label_rows.items():
            per_split[split] = (answers, _by_id(answers, rows, path, label_list))
            used.update(label["question_id"] for label in label_list)
        unknown = sorted(set(ids) - used, key=str)
        if unknown:
            raise VlprefError(f"{answers}: {len(unknown)} answer(s) match no question of the label files "
                              f"(first ids: {unknown[:5]}); pass every split's label file, or for LLaVA's merged "
                              "answer file its question file (--questions)")

    read = pope_answer if scoring == "official" else (lambda text: text.lower().strip())
    metrics = pope_metrics if scoring == "official" else pope_metrics_lmms_eval
    results: dict = {"splits": {}}
    every, every_label = [], []
    for split, (file, pairs) in per_split.items():
        _same_questions(file, pairs)
        verdicts, golds = [read(a["text"]) for _, a, _ in pairs], [label["label"] for _, _, label in pairs]
        results["splits"][split] = metrics(verdicts, golds)
        every += verdicts
        every_label += golds
    results.update(f1_means(results["splits"]))
    results["pooled"] = metrics(every, every_label)
    results["scoring"] = scoring
    return results


def _shared_ids(label_rows: dict[str, tuple[Path, list[dict]]]) -> str | None:
    """'coco_pope_random.json and coco_pope_popular.json share question ids' where two label files do (the official
    files number each split from 1), else None."""
    seen: dict = {}
    for path, rows in label_rows.values():
        for row in rows:
            other = seen.setdefault(row["question_id"], path)
            if other != path:
                return f"{other.name} and {path.name} share question ids ({row['question_id']!r}, ...)"
    return None


def _by_id(answers: Path, rows: list[tuple[int, dict]], labels: Path, label_rows: list[dict]
           ) -> list[tuple[int, dict, dict]]:
    """Each label's answer, matched by question_id: (answer line, answer, label)."""
    by_id = {row["question_id"]: (number, row) for number, row in rows}
    missing = [label["question_id"] for label in label_rows if label["question_id"] not in by_id]
    if missing:
        raise VlprefError(f"{answers}: no answer for {len(missing)} question(s) of {labels} "
                          f"(first ids: {missing[:5]})")
    return [(*by_id[label["question_id"]], label) for label in label_rows]


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
          metadata: Path | None = None, questions: Path | None = None, scoring: str | None = None) -> dict:
    """The official scores of `benchmark` from the given files (see the module docstring for which it needs)."""
    from vlpref.evaluation.scoring import amber, llava_bench, mme, mmhal, mmvet, mtbench

    runners: dict[str, Callable[[], dict]] = {
        "mme": lambda: mme.score_mme_results(_need(answers, "--answers", benchmark)),
        "pope": lambda: score_pope(_need(answers, "--answers", benchmark),
                                   [_need(p, "--labels", benchmark) for p in labels or [None]],
                                   _need(questions, "--questions", benchmark) if questions else None,
                                   scoring or "official"),
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
    for option, value in (("--questions", questions), ("--scoring", scoring)):
        if value is not None and benchmark != "pope":
            raise VlprefError(f"{option}: only pope reads it, not {benchmark}")
    # A broken file is named before any scorer reads it. (POPE's question files are JSON lines named .json.)
    for path in (answers, judge, metadata, questions, *(labels or [])):
        if path is not None and path.is_file() and path.suffix in (".json", ".jsonl"):
            _jsonl(path) if json_lines(path) else _json(path)
    try:
        return runners[benchmark]()
    except ValueError as error:  # the scorers' own input errors name the file, record and field
        raise VlprefError(f"{benchmark}: {error}") from None
