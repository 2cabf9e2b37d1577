"""MM-Vet (Yu et al.) from the official release, graded by a judge as `mm-vet_evaluator.py` grades (benchmarks.md §4).

    vlpref eval --benchmark mmvet --model llava-hf/llava-1.5-7b-hf --data ~/mm-vet \\
        --judge-url https://api.openai.com/v1 --judge-model gpt-4-0613 --judge-prompt mmvet_prompt.txt \\
        --out runs/eval/mmvet

DATA is the unzipped `mm-vet.zip`: `mm-vet.json` (a dict keyed "v1_0" ... "v1_217", each with imagename, question,
answer and capability) and `images/` (or --images).

Prompt (`style`): `llava` and `official` ask `<image>\\n{question}` (LLaVA-1.5's mmvet.sh: the question alone);
`lmms-eval` puts lmms-eval's "think step by step" pre-prompt before the question. Greedy, at most 1024 new tokens.
The answers are written to OUT/answers.json, `{"v1_0": answer, ...}`: the result file the official evaluator reads.

Grader: one user message, the few-shot grading prompt then the row `question | ground truth | prediction | `
(`mmvet_grader_query`), temperature 0, at most 3 tokens. The prompt is `judge.prompt` when given: a file holding the
official prompt string (`mm-vet_evaluator.py`'s `prompt`, which ends with a newline), used byte for byte; only then
are the numbers comparable with published ones. Otherwise `PARAPHRASED_PROMPT`, our own wording of the instruction
with the first five few-shot rows of the official table; the official table's two meme rows are left out, as their
long texts would have to be copied verbatim.

An output that is not a number in [0, 1] is asked again as the official loop asks: the same row plus "Predict the
correctness of the answer (digit): ", first at temperature 0 and then 0.5 higher each time, until 5 outputs have been
read; 5 invalid outputs score 0 (counted in `parse_failures`). Here this runs in rounds: round k sends only the items
still without a valid grade. (The official loop also fetches a sixth output it never reads; it is not requested.)

Grades go to OUT/grades.json in the evaluator's grade-file layout (`{id: {"model": [judge], "content": [output],
"score": [score]}}`, one run), which `vlpref eval score --benchmark mmvet` reads. Results: `total`,
`per_capability`, `per_combination` (×100, unrounded; `vlpref.evaluation.scoring.mmvet`), `parse_failures`,
`retried` (items that needed more than one output) and `judge_prompt` (which prompt graded: "paraphrase" or
"official file <name>").
"""

from __future__ import annotations

import json

from vlpref.data.files import read_json
from vlpref.data.schema import DecodingParams, Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import JudgeRequest, Question, Session, greedy
from vlpref.evaluation.scoring.mmvet import (
    MMVET_MAX_TRIES,
    mmvet_final_score,
    mmvet_grader_query,
    mmvet_parse_grade,
    mmvet_scores,
)

MAX_NEW_TOKENS = 1024
PRE_PROMPT_LMMS_EVAL = ("First please perform reasoning, and think step by step to provide best answer to the "
                        "following question: \n\n")
GRADER_MAX_TOKENS = 3
RETRY_TEMPERATURE_STEP = 0.5
FIELDS = ("imagename", "question", "answer", "capability")

# Our paraphrase of the official grading prompt (benchmarks.md §4.3): the instruction in our words (compare with the
# ground truth; <AND> needs every element, <OR> any one; the 0.0-1.0 scale in steps of 0.1; fill in only the last
# cell), the table header and separator, and few-shot rows 1-5. Rows 6-7 (the meme) are left out: the official text
# of those rows is long prose that we do not copy. Like the official string, it ends with a newline.
PARAPHRASED_PROMPT = (
    "Judge how correct an AI model's prediction is by comparing it with the ground truth, and give the prediction a "
    "correctness score. Where the ground truth joins elements with <AND>, the prediction is fully correct only if "
    "it contains every one of them; where it joins them with <OR>, the prediction is fully correct if it contains "
    "any one of them. The score must be one of 0.0 (completely wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 "
    "and 1.0 (completely right). Fill in only the empty last cell of the table: the correctness score.\n"
    "\n"
    "Question | Ground truth | Prediction | Correctness\n"
    "--- | --- | --- | ---\n"
    "What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0\n"
)


def read_samples(session: Session) -> tuple[dict[str, dict], str]:
    """mm-vet.json's samples (after `limit`), each checked for the fields the run reads; and the file's path."""
    path = session.data() / "mm-vet.json"
    data = read_json(path, "mmvet: the question file (mm-vet.json from mm-vet.zip)")
    if not isinstance(data, dict) or not data:
        raise VlprefError(f"{path}: expected a non-empty JSON object keyed by sample id (\"v1_0\", ...)")
    for key, sample in data.items():
        if not isinstance(sample, dict):
            raise VlprefError(f"{path}: sample {key!r} is not an object")
        missing = [f for f in FIELDS if f not in sample]
        if missing:
            raise VlprefError(f"{path}: sample {key!r} has no {missing[0]!r} field")
        for name in FIELDS[:3]:
            if not isinstance(sample[name], str):
                raise VlprefError(f"{path}: sample {key!r}, field {name!r}: expected a string")
        caps = sample["capability"]
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c for c in caps):
            raise VlprefError(f"{path}: sample {key!r}, field 'capability': expected a non-empty list of names "
                              f"(rec, ocr, know, gen, spat, math), got {caps!r}")
    keys = session.limited(list(data))
    return {key: data[key] for key in keys}, str(path)


def grader_prompt(session: Session) -> tuple[str, str]:
    """(prompt, label): the official prompt from judge.prompt, else our paraphrase."""
    path = session.judge_prompt_file()
    if path is None:
        return PARAPHRASED_PROMPT, "paraphrase"
    prompt = path.read_text(encoding="utf-8")
    if not prompt.strip():
        raise VlprefError(f"judge.prompt: {path} is empty; it should hold the official MM-Vet grading prompt")
    if not prompt.endswith("\n"):
        # The official string ends with a newline, so the row follows a blank line; a file saved without it grades
        # with a slightly different message. Used as given all the same.
        session.log(f"note: {path} does not end with a newline (the official prompt does); using it as it is")
    return prompt, f"official file {path.name}"


def grade(session: Session, samples: dict[str, dict], answers: dict[str, str], prompt: str) -> dict[str, list]:
    """Each sample's grader outputs in the order read: round 0 asks every sample, round k (1-4) asks, with the
    retry suffix at temperature 0.5·(k-1), only those whose last output was invalid."""
    outputs: dict[str, list[str]] = {key: [] for key in samples}
    pending = list(samples)
    for attempt in range(MMVET_MAX_TRIES):
        if not pending:
            break
        # The official loop re-asks at the current temperature and only then raises it: 0, 0, 0.5, 1.0, 1.5.
        temperature = RETRY_TEMPERATURE_STEP * max(attempt - 1, 0)
        decoding = DecodingParams(temperature=temperature, max_new_tokens=GRADER_MAX_TOKENS)
        requests = []
        for key in pending:
            sample = samples[key]
            query = mmvet_grader_query(prompt, sample["question"], sample["answer"], answers[key], retry=attempt > 0)
            requests.append(JudgeRequest(f"{key} (output {attempt + 1})", [{"role": "user", "content": query}],
                                         decoding, item=key))
        if attempt:
            session.log(f"asking again for {len(pending)} invalid grade(s) (output {attempt + 1} of "
                        f"{MMVET_MAX_TRIES}, temperature {temperature})")
        for key, reply in zip(pending, session.judge(requests), strict=True):
            outputs[key].append(reply)
        pending = [key for key in pending if mmvet_parse_grade(outputs[key][-1]) is None]
    return outputs


def run(session: Session) -> dict:
    config = session.config
    samples, source = read_samples(session)
    images = session.images_root("images")
    pre = PRE_PROMPT_LMMS_EVAL if config.style == "lmms-eval" else ""
    questions = [Question(key, [Turn(role="user", text="<image>\n" + pre + sample["question"])],
                          [images / sample["imagename"]], greedy(session.max_new_tokens(MAX_NEW_TOKENS)),
                          source=source)
                 for key, sample in samples.items()]
    answers = dict(zip(samples, session.answers(questions), strict=True))
    (session.out / "answers.json").write_text(json.dumps(answers, indent=2, ensure_ascii=False), encoding="utf-8")

    prompt, prompt_label = grader_prompt(session)
    outputs = grade(session, samples, answers, prompt)
    judge_id = config.judge.judge_id()
    grades, scores, failures = {}, {}, []
    for key, texts in outputs.items():
        score, valid = mmvet_final_score(texts)
        # The output that gave the score (the first valid one); after 5 invalid ones, the last read.
        used = next((t for t in texts if mmvet_parse_grade(t) is not None), texts[-1])
        grades[key] = {"model": [judge_id], "content": [used], "score": [score]}
        scores[key] = score
        if not valid:
            failures.append(key)
    (session.out / "grades.json").write_text(json.dumps(grades, indent=2, ensure_ascii=False), encoding="utf-8")
    if failures:
        session.log(f"mmvet: {len(failures)} sample(s) scored 0 after {MMVET_MAX_TRIES} invalid grader outputs: "
                    f"{failures[:5]}")

    try:
        results = mmvet_scores({key: sample["capability"] for key, sample in samples.items()}, scores)
    except ValueError as error:
        raise VlprefError(f"mmvet: {error}") from None
    results["parse_failures"] = len(failures)
    results["parse_failure_ids"] = failures
    results["retried"] = sum(len(texts) > 1 for texts in outputs.values())
    results["judge_prompt"] = prompt_label
    results["style"] = config.style
    return results
