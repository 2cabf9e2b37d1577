"""MME (Fu et al.): the official yes/no parser and subtask, perception and cognition scores (benchmarks.md §2).

    >>> mme_answer("No, there is none."), mme_answer(" yes"), mme_answer("The answer is yes.")
    ('no', 'yes', 'other')
    >>> lines = [MMELine("a.jpg", "Is there a dog?", "Yes", "Yes"), MMELine("a.jpg", "Is there a cat?", "No", "Yes"),
    ...          MMELine("b.jpg", "Is there a cow?", "No", "no"), MMELine("b.jpg", "Is there a car?", "Yes", "yes")]
    >>> mme_subtask_score(lines)                       # 3 of 4 questions right, 1 of 2 images fully right
    {'acc': 75.0, 'acc_plus': 50.0, 'score': 125.0, 'images': 2, 'questions': 4, 'correct': 3, 'other': 0}

Scoring, as the official eval tool (`eval_tool/calculation.py`) defines it:
- Each answer is lower-cased and parsed by `mme_answer`: exactly 'yes'/'no' stands; otherwise only its first four
  characters are searched, 'yes' first, then 'no'; anything else is 'other', which is always wrong.
- acc = correct questions / questions; acc+ = images with both questions right / images; both ×100, and the subtask
  score is acc + acc+ (at most 200). Perception sums the 10 perception subtasks (max 2000), cognition the 4
  cognition subtasks (max 800).
- The tool pairs the lines of a subtask file by position (lines 1-2, 3-4, ...), so the two questions of an image must
  be adjacent. By default we also check that both lines of a pair name the same image; the official tool does not
  check, and a shuffled file would give it a meaningless acc+.
- 'other' answers are scored as the official tool scores them (wrong), and counted in `other` so that a parser
  mismatch (e.g. a model that answers "The answer is yes") is visible rather than silently lowering the score.

Results layout (`read_mme_results`): one `<subtask>.txt` per subtask (names as in `PERCEPTION_SUBTASKS` and
`COGNITION_SUBTASKS`, `OCR` upper-case), one question per line: image, question, ground truth (Yes/No) and the
model's answer, separated by TABs. A TAB or newline inside the answer breaks the line, so strip them when writing.

lmms-eval differs (not implemented here): it strips the answer and deletes '.', maps the single letters 'y'/'n' to
yes/no before the 4-character rule, and averages acc + acc+ per image instead of per file; it also prompts with
"Answer the question using a single word or phrase." instead of "Please answer yes or no.".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PERCEPTION_SUBTASKS = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                       "artwork", "OCR")
COGNITION_SUBTASKS = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SUBTASKS = PERCEPTION_SUBTASKS + COGNITION_SUBTASKS


@dataclass(frozen=True)
class MMELine:
    """One question of a results file. `source` ('existence.txt:7') only serves error messages."""

    image: str
    question: str
    truth: str
    answer: str
    source: str = ""


def mme_answer(text: str) -> str:
    """'yes', 'no' or 'other' by the official rule: lower-case; an exact 'yes'/'no' stands, else look for 'yes', then
    'no', inside the first 4 characters only. So 'Not really' and 'nope' are no, ' yes' is yes, 'The answer is yes'
    is other. No stripping: '   yes' (3 spaces) is other, as in the official tool.

    The official tool parses the answer with its line's trailing newline still attached; that cannot change the
    result (a newline can neither form nor break 'yes'/'no' within 4 characters), so callers pass the bare answer.
    """
    text = text.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def parse_mme_line(line: str, source: str = "") -> MMELine:
    """Split one results line (without its line terminator) into its 4 TAB-separated fields."""
    fields = line.split("\t")
    where = source or "line"
    if "\r" in line:  # a CRLF ending is removed by the reader; a CR left is inside a field and ends the line there
        field = ("image", "question", "ground truth", "answer")[min(line[: line.index("\r")].count("\t"), 3)]
        raise ValueError(f"{where}: a stray carriage return (CR) in the {field}; the official tool reads it as a "
                         "line break, so remove CRs and newlines from answers before writing the file")
    if len(fields) > 4:
        raise ValueError(f"{where}: expected 4 TAB-separated fields (image, question, ground truth, answer), got "
                         f"{len(fields)}; a TAB inside the model's answer must be removed before writing the file")
    if len(fields) == 3:
        raise ValueError(f"{where}: no answer column: 3 TAB-separated fields (image, question, ground truth); the "
                         "model's answer goes after a 4th TAB (eval_tool/readme.txt)")
    if len(fields) < 3:
        raise ValueError(f"{where}: expected 4 TAB-separated fields (image, question, ground truth, answer), got "
                         f"{len(fields)}; is it the rest of the line before, cut by a newline inside its answer?")
    image, question, truth, answer = fields
    if truth.lower() not in ("yes", "no"):
        raise ValueError(f"{where}: ground truth must be Yes or No, got {truth!r}")
    return MMELine(image, question, truth, answer, source)


def mme_subtask_score(lines: Sequence[MMELine], *, name: str = "subtask", check_pairs: bool = True) -> dict:
    """acc and acc+ (both ×100), their sum `score`, and counts, for the lines of one subtask in file order.

    Raises ValueError for an empty subtask (the official tool would divide by zero), an odd number of lines, a
    ground truth other than yes/no, and, with `check_pairs`, a pair of consecutive lines naming different images.
    """
    if not lines:
        raise ValueError(f"{name}: no questions; an empty subtask has no score")
    if len(lines) % 2:
        last = lines[-1].source or f"{name} line {len(lines)}"
        raise ValueError(f"{last}: {name} has {len(lines)} questions, but every image needs exactly two, on "
                         f"consecutive lines")
    correct = both_right = other = 0
    for k in range(0, len(lines), 2):
        pair = lines[k:k + 2]
        if check_pairs and pair[0].image != pair[1].image:
            where = pair[1].source or f"{name} line {k + 2}"
            raise ValueError(f"{where}: paired with the line before it, but the images differ ({pair[0].image!r} vs "
                             f"{pair[1].image!r}); the scorer pairs consecutive lines, so keep an image's two "
                             f"questions adjacent")
        right = 0
        for line in pair:
            truth = line.truth.lower()
            if truth not in ("yes", "no"):
                raise ValueError(f"{line.source or name}: ground truth must be Yes or No, got {line.truth!r}")
            predicted = mme_answer(line.answer)
            other += predicted == "other"
            right += predicted == truth
        correct += right
        both_right += right == 2
    images = len(lines) // 2
    acc = correct / len(lines) * 100
    acc_plus = both_right / images * 100
    return {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "images": images, "questions": len(lines),
            "correct": correct, "other": other}


def mme_totals(scores: Mapping[str, float]) -> dict:
    """Perception and cognition totals from subtask scores (`score` of `mme_subtask_score`), summed in the official
    order. A group with a missing subtask gets None rather than a partial sum that looks comparable to published
    totals; `missing` lists what is absent. Unknown subtask names raise ValueError (a typo would otherwise vanish).
    """
    unknown = sorted(set(scores) - set(SUBTASKS))
    if unknown:
        raise ValueError(f"unknown MME subtasks {unknown}; expected names from {list(SUBTASKS)}")
    missing = [name for name in SUBTASKS if name not in scores]

    def group(names: tuple[str, ...]) -> float | None:
        if any(name not in scores for name in names):
            return None
        total = 0.0
        for name in names:
            total += scores[name]
        return total

    return {"perception": group(PERCEPTION_SUBTASKS), "cognition": group(COGNITION_SUBTASKS), "missing": missing}


@dataclass
class MMEResults:
    """What `read_mme_results` found: parsed lines of each official subtask file present (official order), the
    official subtasks without a file, and the stems of other `.txt` files (not read)."""

    lines: dict[str, list[MMELine]]
    missing: list[str]
    unknown: list[str]


def read_mme_file(path: str | Path) -> list[MMELine]:
    """Parse one `<subtask>.txt`; errors name the file and the 1-based line number. Blank lines at the very end
    are ignored (they carry no data; the official tool would crash on them); a blank line elsewhere is an error."""
    path = Path(path)
    # Split on '\n' only, as the official readlines() does, so a stray U+2028 or form feed inside an answer does not
    # start a new line the way str.splitlines() would. Read without newline translation, so that a CR other than
    # a CRLF ending stays visible and is named (`parse_mme_line`) instead of silently splitting the line.
    with path.open(encoding="utf-8", newline="") as f:
        rows = [row.removesuffix("\r") for row in f.read().split("\n")]
    while rows and rows[-1] == "":
        rows.pop()
    return [parse_mme_line(row, f"{path.name}:{number}") for number, row in enumerate(rows, start=1)]


def read_mme_results(directory: str | Path) -> MMEResults:
    """Read every official subtask file in `directory`; report missing subtasks and unknown `.txt` files.
    File names are case-sensitive, as in the official tool: `ocr.txt` is unknown and `OCR` missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory of MME results")
    present = {p.stem: p for p in directory.glob("*.txt")}
    lines = {name: read_mme_file(present[name]) for name in SUBTASKS if name in present}
    missing = [name for name in SUBTASKS if name not in present]
    unknown = sorted(stem for stem in present if stem not in SUBTASKS)
    return MMEResults(lines, missing, unknown)


def score_mme_results(directory: str | Path, *, check_pairs: bool = True) -> dict:
    """Official MME report for a results directory: per-subtask results, perception and cognition totals (None
    where a subtask is missing), the missing and unknown subtasks, and the total count of 'other' answers."""
    results = read_mme_results(directory)
    subtasks = {name: mme_subtask_score(lines, name=name, check_pairs=check_pairs)
                for name, lines in results.lines.items()}
    totals = mme_totals({name: result["score"] for name, result in subtasks.items()})
    return {"subtasks": subtasks, "perception": totals["perception"], "cognition": totals["cognition"],
            "missing": results.missing, "unknown": results.unknown,
            "other": sum(result["other"] for result in subtasks.values())}
