"""MME (Fu et al.) from the official release folder (benchmarks.md §2).

    vlpref eval --benchmark mme --model llava-hf/llava-1.5-7b-hf --data MME_Benchmark_release_version \\
        --out runs/eval/mme

DATA holds one folder per subtask (`existence`, ..., `OCR`, `code_reasoning`), in either of the release's layouts:
`<task>/images/<stem>.jpg|png` with `<task>/questions_answers_YN/<stem>.txt`, or `<task>/<stem>.jpg|png` next to
`<task>/<stem>.txt`. Each text file holds an image's two questions, one per line: question TAB answer (Yes/No).

Prompt (`style`): `official` asks the question as given (it ends "Please answer yes or no."); `llava` and `lmms-eval`
replace that ending with "\\nAnswer the question using a single word or phrase." (LLaVA-1.5's converter and
lmms-eval's default post-prompt). Greedy; at most 128 new tokens (LLaVA), 16 for `lmms-eval`.

The answers are written as the eval tool's results folder, OUT/answers/<task>.txt (image TAB question TAB truth TAB
answer, TABs and newlines in the answer replaced by spaces, an image's two questions adjacent), and scored by the
official rules (`vlpref.evaluation.scoring.mme`): acc and acc+ per subtask, perception and cognition totals, and the
count of answers the 4-character parser reads as neither yes nor no (`other`). `vlpref eval score --benchmark mme
--answers OUT/answers` reads the same folder.
"""

from __future__ import annotations

import re
import shutil

from vlpref.data.schema import Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import Question, Session, greedy
from vlpref.evaluation.scoring.mme import SUBTASKS, mme_answer, score_mme_results

SUFFIX = "\nAnswer the question using a single word or phrase."
# Some questions have two spaces before "Please" (benchmarks.md §2.1); both forms are replaced.
ENDING = re.compile(r"\s+Please answer yes or no\.\s*$")
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")
BREAKS = re.compile(r"[\t\r\n]+")


def prompt_text(question: str, style: str) -> str:
    """The question as the model sees it: as given (`official`), or with LLaVA's short-answer instruction."""
    return question if style == "official" else ENDING.sub("", question) + SUFFIX


def _pairs(task_dir):
    """(image path, question file) per image of one subtask, in either release layout, sorted by stem."""
    if (task_dir / "questions_answers_YN").is_dir():
        texts, image_dir = sorted((task_dir / "questions_answers_YN").glob("*.txt")), task_dir / "images"
    else:
        texts, image_dir = sorted(task_dir.glob("*.txt")), task_dir
    for text in texts:
        image = next((image_dir / (text.stem + s) for s in IMAGE_SUFFIXES if (image_dir / (text.stem + s)).is_file()),
                     None)
        if image is None:
            raise VlprefError(f"mme: {text}: no image {text.stem}.jpg or .png in {image_dir}")
        yield image, text


def run(session: Session) -> dict:
    config, data = session.config, session.data()
    tasks = [name for name in SUBTASKS if (data / name).is_dir()]
    if not tasks:
        raise VlprefError(f"mme: no subtask folders ({', '.join(SUBTASKS[:3])}, ...) in {data}")
    max_new_tokens = session.max_new_tokens(16 if config.style == "lmms-eval" else 128)

    lines, questions = [], []  # lines[i] = (task, image name, question, truth), the i-th question's results line
    for task in tasks:
        for image, text in session.limited(list(_pairs(data / task))):
            rows = [row for row in text.read_text(encoding="utf-8").splitlines() if row.strip()]
            if len(rows) != 2:
                raise VlprefError(f"mme: {text}: {len(rows)} question lines; each image has exactly two "
                                  "(question TAB Yes/No)")
            for number, row in enumerate(rows, start=1):
                if row.count("\t") != 1:
                    raise VlprefError(f"mme: {text}, line {number}: expected 'question<TAB>Yes|No'")
                question, truth = row.split("\t")
                lines.append((task, image.name, question, truth.strip()))
                questions.append(Question(f"{task}/{text.stem}:{number}",
                                          [Turn(role="user", text="<image>\n" + prompt_text(question, config.style))],
                                          [image], greedy(max_new_tokens), source=str(text)))
    answers = session.answers(questions)
    for question, (task, _, _, truth), answer in zip(questions, lines, answers, strict=True):
        parsed = mme_answer(answer.lower())
        session.detail(question.id, subtask=task, reference=truth, parsed=parsed, correct=parsed == truth.lower())

    folder = session.out / "answers"
    if folder.is_dir():  # scored as a whole: an earlier run's subtask files must not join this run's totals
        shutil.rmtree(folder)
    folder.mkdir()
    for task in tasks:
        # The eval tool splits on TAB and reads one question per line: the answer may contain neither.
        rows = ["\t".join((image, question, truth, BREAKS.sub(" ", answer)))
                for (t, image, question, truth), answer in zip(lines, answers, strict=True) if t == task]
        (folder / f"{task}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    results = score_mme_results(folder)
    results["style"] = config.style
    return results
