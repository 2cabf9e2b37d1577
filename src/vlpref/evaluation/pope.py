"""POPE (Li et al. 2023) from the official question files (benchmarks.md §1).

    vlpref eval --benchmark pope --model llava-hf/llava-1.5-7b-hf --data POPE/output/coco --images coco/val2014 \\
        --out runs/eval/pope

DATA holds the question files `coco_pope_{random,popular,adversarial}.json` (JSON lines despite the name: question_id,
image, text, label); the SEEM-based `*_pope_seem_*.json` files work the same way. Images are read from --images, else
DATA/val2014, else DATA/images, else DATA.

Prompt (`style`): `llava` and `lmms-eval` ask "<question>\\nAnswer the question using a single word or phrase."
(LLaVA-1.5's eval and lmms-eval's pope task); `official` asks the question alone (the POPE repo). Greedy, at most
128 new tokens. Scoring (`scoring`): `official` is the first-sentence parser of the POPE repo and LLaVA's
eval_pope.py; `lmms-eval` is lmms-eval's exact match (`vlpref.evaluation.scoring.pope`), which also reports
lmms-eval's own yes-ratio (the labels' share of yes, a bug) as `yes_ratio_lmms_eval` beside ours.

Results: per split accuracy, precision, recall, F1 and yes-ratio; `f1_mean`, the mean of the three COCO splits'
F1s (the single "POPE" number LLaVA-1.5 reports; None unless all three were scored; `f1_mean_<dataset>` for the
SEEM files); `pooled`, every question as one set (what lmms-eval's `pope` task reports); `question_files`, each
file's SHA-256 and which published version it is.
LLaVA-1.5 was evaluated on the files of POPE commit e3e3926, whose random split has 2910 questions; the current ones
have 3000, and random's content differs entirely. Answers are written per split to OUT/answers/<split>.jsonl
(question_id, prompt, text: LLaVA's layout), which `vlpref eval score --benchmark pope` reads.
"""

from __future__ import annotations

import hashlib

from vlpref.data.files import read_jsonl, write_jsonl
from vlpref.data.schema import Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import Question, Session, greedy
from vlpref.evaluation.scoring.pope import SPLITS as SPLIT_ORDER
from vlpref.evaluation.scoring.pope import f1_means, pope_answer, pope_metrics, pope_metrics_lmms_eval

SUFFIX = "\nAnswer the question using a single word or phrase."
MAX_NEW_TOKENS = 128
# SHA-256 of the official COCO question files (benchmarks.md §1.1), to say which version a run used.
VERSIONS = {
    "c16b65d2df6d70bb0814c8a4375833d39cdb09928fd936d3fc546491efa37f35": "e3e3926 random (2910 q, LLaVA-1.5's)",
    "5b16653023bf4f64d57eb0d168259de6627f5cde7538b85ebed3cc33034aa6cc": "e3e3926 popular (LLaVA-1.5's)",
    "1d8f0906a9b50c05640f6f23abfac97523be2a1bed28f7eadc63b811699b2d26": "e3e3926 adversarial (LLaVA-1.5's)",
    "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994": "HEAD random (3000 q)",
    "72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753": "HEAD popular",
    "420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8": "HEAD adversarial",
}


def split_name(stem: str) -> str:
    """'coco_pope_random' -> 'random'; other datasets keep their prefix: 'gqa_pope_seem_random' -> 'gqa_seem_random'."""
    return stem.removeprefix("coco_pope_").replace("_pope_", "_")


def _order(stem: str) -> tuple:
    name = split_name(stem)
    rank = next((i for i, s in enumerate(SPLIT_ORDER) if name.endswith(s)), len(SPLIT_ORDER))
    return (name.rsplit("_", 1)[0] if "_" in name else "", rank, name)


def run(session: Session) -> dict:
    config, data = session.config, session.data()
    files = sorted(data.glob("*_pope_*.json"), key=lambda p: _order(p.stem))
    if not files:
        raise VlprefError(f"pope: no question files (*_pope_*.json, e.g. coco_pope_random.json) in {data}")
    images = session.images_root("val2014")
    if images == data and (data / "images").is_dir():
        images = data / "images"

    splits, questions = {}, []
    for path in files:
        rows = session.limited(read_jsonl(path, "pope question file"))
        for number, row in enumerate(rows, start=1):
            missing = [k for k in ("question_id", "image", "text", "label") if k not in row]
            if missing:
                raise VlprefError(f"{path}, line {number}: no {missing[0]!r} field")
        splits[split_name(path.stem)] = (path, rows)
        for row in rows:
            text = row["text"] if config.style == "official" else row["text"].strip() + SUFFIX
            questions.append(Question(f"{path.stem}:{row['question_id']}", [Turn(role="user", text="<image>\n" + text)],
                                      [images / row["image"]], greedy(session.max_new_tokens(MAX_NEW_TOKENS)),
                                      source=str(path)))
    answers = iter(session.answers(questions))
    prompts = iter(q.turns[0].text.removeprefix("<image>\n") for q in questions)

    (session.out / "answers").mkdir(exist_ok=True)
    results: dict = {"splits": {}, "question_files": {}}
    # the answers as the chosen scorer reads them: the official parser's verdict, or lmms-eval's bare text
    read = pope_answer if config.scoring == "official" else (lambda text: text.lower().strip())
    score = pope_metrics if config.scoring == "official" else pope_metrics_lmms_eval
    all_verdicts, all_labels = [], []
    for name, (path, rows) in splits.items():
        texts = [next(answers) for _ in rows]
        write_jsonl(session.out / "answers" / f"{name}.jsonl",
                    [{"question_id": row["question_id"], "prompt": next(prompts), "text": text}
                     for row, text in zip(rows, texts, strict=True)])
        labels = [row["label"] for row in rows]
        verdicts = [read(t) for t in texts]
        for row, verdict in zip(rows, verdicts, strict=True):
            session.detail(f"{path.stem}:{row['question_id']}", split=name, reference=row["label"], parsed=verdict,
                           correct=verdict == row["label"])
        results["splits"][name] = score(verdicts, labels)
        all_verdicts += verdicts
        all_labels += labels
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        results["question_files"][path.name] = {"sha256": digest, "version": VERSIONS.get(digest, "unknown")}
    results.update(f1_means(results["splits"]))
    # lmms-eval's `pope` task pools every question into one metric; reported too, for comparison with its tables
    results["pooled"] = score(all_verdicts, all_labels)
    results["style"], results["scoring"] = config.style, config.scoring
    return results
