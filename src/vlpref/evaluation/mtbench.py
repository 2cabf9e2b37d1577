"""MT-Bench (FastChat `llm_judge`): two-turn text chats answered as `gen_model_answer.py` answers them and graded
as `gen_judgment.py --mode single` grades them (benchmarks.md §8).

    vlpref eval --benchmark mtbench --model runs/dpo/model --data ~/FastChat/fastchat/llm_judge/data/mt_bench \\
        --judge-url https://api.openai.com/v1 --judge-model gpt-4 \\
        --judge-prompt ~/FastChat/fastchat/llm_judge/data/judge_prompts.jsonl --out runs/eval/mtbench

DATA is FastChat's `data/mt_bench` folder: `question.jsonl` (question_id, category, turns: the two user turns) and
`reference_answer/gpt-4.jsonl` (FastChat's answer layout), which the math, reasoning and coding questions need.

Generation: text only (no image), in the model's own chat template. Turn 1 is answered first; turn 2's chat holds
question 1, the model's own (stripped) turn-1 answer as the assistant turn, then question 2. The temperature is
FastChat's per category (`TEMPERATURES`: writing and roleplay 0.7; extraction, math, coding and reasoning 0, i.e.
greedy; stem and humanities 0.1; any other 0.7), at most 1024 new tokens. A sampled answer gets the question_id as
its seed, so it is reproducible and the journal can hold it. The answers are written to OUT/model_answer.jsonl in
FastChat's layout (question_id, answer_id, model_id, choices[{index, turns}], tstamp).

Judge: FastChat's four single-answer judges: `single-v1` grades turn 1 and `single-v1-multi-turn` turn 2 (shown
the whole conversation, told to grade the second answer); math, reasoning and coding questions get the
reference-guided `single-math-v1` and `single-math-v1-multi-turn`, which also show the GPT-4 reference answer(s).
Temperature 0, at most 2048 tokens; a system message (the prompt's `system_prompt`) and a user message (its
`prompt_template` filled in). The prompts are `judge.prompt` when given: FastChat's `data/judge_prompts.jsonl`, only
then are the numbers comparable with published ones; otherwise `PARAPHRASED_PROMPTS`, our own wording with every
element of the four (benchmarks.md §8.4).

The rating is FastChat's (`judge_rating`: `[[x]]`, else `[x]`, else -1). Judgments go to OUT/judgment.jsonl in
FastChat's layout (question_id, model, judge: [judge, prompt name], user_prompt, judgment, score, turn, tstamp),
which `vlpref eval score --benchmark mtbench` and FastChat's show_result.py read. Results: `turn_1`, `turn_2`,
`average` (the MT-Bench score: the mean of every rating but the -1s), `judgments`, `failures`; and
`ours_per_category`, the mean rating per category, which is our addition (FastChat reports none); `judge_prompt`:
"paraphrase" or "official file <name>".
"""

from __future__ import annotations

import hashlib
import math
import time

from vlpref.data.files import read_jsonl, write_jsonl
from vlpref.data.schema import DecodingParams, Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import JudgeRequest, Question, Session
from vlpref.evaluation.scoring.mtbench import FAILED, judge_rating, mtbench_scores

MAX_NEW_TOKENS = 1024
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048
# FastChat's temperature_config; a category not listed gets DEFAULT_TEMPERATURE
TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
                "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
DEFAULT_TEMPERATURE = 0.7
GREEDY_BELOW = 1e-4  # FastChat samples only above this temperature
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
REFERENCE_FILE = "reference_answer/gpt-4.jsonl"
PROMPT_NAMES = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")

_RATE = ("After your explanation, give the response a rating from 1 to 10, written strictly in this format: "
         "\"[[rating]]\", for example \"Rating: [[5]]\".")
_GENERAL = ("Take the role of an impartial judge and assess the quality of the response that an AI assistant gave "
            "to the user question shown below. Weigh its helpfulness, relevance, accuracy, depth, creativity and "
            "level of detail. Open your evaluation with a short explanation, and be as objective as you can. ")
_MATH = ("Take the role of an impartial judge and assess the quality of the response that an AI assistant gave to "
         "the user question shown below. Weigh its correctness and its helpfulness. You are given a reference "
         "answer and the assistant's answer. Open your evaluation by comparing the assistant's answer with the "
         "reference answer; point out any mistakes and correct them. Be as objective as you can. ")
_SECOND = "Focus your evaluation on the assistant's answer to the second user question. "
_CONVERSATION = ("<|The Start of Assistant A's Conversation with User|>\n\n"
                 "### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n"
                 "### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n"
                 "<|The End of Assistant A's Conversation with User|>")
# Our paraphrases of FastChat's judge_prompts.jsonl single-answer prompts (benchmarks.md §8.4): the same roles,
# criteria, scale, output format and layout of the question, reference and answer blocks, in our wording.
PARAPHRASED_PROMPTS = {
    "single-v1": {
        "system_prompt": "You are a helpful assistant.",
        "prompt_template": "[Instruction]\n" + _GENERAL + _RATE + "\n\n[Question]\n{question}\n\n"
                           "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
    },
    "single-math-v1": {
        "system_prompt": "You are a helpful assistant.",
        "prompt_template": "[Instruction]\n" + _MATH + _RATE + "\n\n[Question]\n{question}\n\n"
                           "[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n"
                           "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
    },
    "single-v1-multi-turn": {
        "system_prompt": _GENERAL + _SECOND + _RATE,
        "prompt_template": _CONVERSATION,
    },
    "single-math-v1-multi-turn": {
        "system_prompt": _MATH + _SECOND + _RATE,
        "prompt_template": "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n"
                           "{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n"
                           "<|The End of Reference Answer|>\n\n\n" + _CONVERSATION,
    },
}


def decoding(category: str, question_id) -> DecodingParams:
    """FastChat's per-category temperature; a sampled answer is seeded with its question_id (a stable int)."""
    temperature = TEMPERATURES.get(category, DEFAULT_TEMPERATURE)
    if temperature < GREEDY_BELOW:
        return DecodingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
    seed = question_id if isinstance(question_id, int) and question_id >= 0 else int(
        hashlib.sha256(str(question_id).encode()).hexdigest()[:15], 16)
    return DecodingParams(temperature=temperature, max_new_tokens=MAX_NEW_TOKENS, seed=seed)


def read_questions(session: Session) -> list[dict]:
    path = session.data() / "question.jsonl"
    rows = read_jsonl(path, "mtbench: the questions (question.jsonl from FastChat's data/mt_bench)")
    seen = set()
    for number, row in enumerate(rows, start=1):
        missing = [k for k in ("question_id", "category", "turns") if k not in row]
        if missing:
            raise VlprefError(f"{path}, line {number}: no {missing[0]!r} field")
        turns = row["turns"]
        if not isinstance(turns, list) or len(turns) not in (1, 2) or not all(isinstance(t, str) for t in turns):
            raise VlprefError(f"{path}, line {number} (question {row['question_id']}): 'turns' must be a list of "
                              "one or two strings")
        if row["question_id"] in seen:
            raise VlprefError(f"{path}, line {number}: question_id {row['question_id']} appears twice")
        seen.add(row["question_id"])
    if not rows:
        raise VlprefError(f"{path}: no questions")
    return session.limited(rows)


def read_references(session: Session, questions: list[dict]) -> dict:
    """question_id -> the reference turns, for the questions whose category needs a reference."""
    needing = [q for q in questions if q["category"] in NEED_REF_CATS]
    if not needing:
        return {}
    path = session.data() / REFERENCE_FILE
    if not path.is_file():
        raise VlprefError(f"mtbench: {path} does not exist; the {', '.join(sorted({q['category'] for q in needing}))} "
                          f"questions are graded against FastChat's reference answers ({REFERENCE_FILE} of "
                          "data/mt_bench)")
    by_id = {}
    for number, row in enumerate(read_jsonl(path, "mtbench reference answers"), start=1):
        try:
            by_id[row["question_id"]] = row["choices"][0]["turns"]
        except (KeyError, IndexError, TypeError):
            raise VlprefError(f"{path}, line {number}: expected question_id and choices[0].turns (FastChat's answer "
                              "layout)") from None
    for q in needing:
        turns = by_id.get(q["question_id"])
        if turns is None:
            raise VlprefError(f"{path}: no reference answer for question {q['question_id']} ({q['category']})")
        if not isinstance(turns, list) or len(turns) < len(q["turns"]) or not all(isinstance(t, str) for t in turns):
            raise VlprefError(f"{path}: question {q['question_id']}: choices[0].turns must hold "
                              f"{len(q['turns'])} reference answer string(s)")
    return by_id


def judge_prompts(session: Session) -> tuple[dict[str, dict], str]:
    """(the four prompts by name, label): FastChat's judge_prompts.jsonl from judge.prompt, else our paraphrases."""
    path = session.judge_prompt_file()
    if path is None:
        return PARAPHRASED_PROMPTS, "paraphrase"
    found = {row.get("name"): row for row in read_jsonl(path, "judge.prompt") if isinstance(row, dict)}
    for name in PROMPT_NAMES:
        row = found.get(name)
        if row is None:
            raise VlprefError(f"judge.prompt: {path} has no prompt named {name!r} (is it FastChat's "
                              "data/judge_prompts.jsonl?)")
        for field in ("system_prompt", "prompt_template"):
            if not isinstance(row.get(field), str):
                raise VlprefError(f"judge.prompt: {path}, prompt {name!r}: no {field!r} string")
        if row.get("output_format", "[[rating]]") != "[[rating]]":
            # FastChat's single grading reads only this format and stops on any other
            raise VlprefError(f"judge.prompt: {path}, prompt {name!r}: output_format {row['output_format']!r}; "
                              "single-answer grading reads '[[rating]]'")
    return found, f"official file {path.name}"


def generate(session: Session, questions: list[dict]) -> dict:
    """question_id -> the model's answers to its turns, turn 1 for all questions first, then turn 2."""
    source = str(session.data() / "question.jsonl")
    tokens = session.max_new_tokens(MAX_NEW_TOKENS)
    params = {q["question_id"]: decoding(q["category"], q["question_id"]).model_copy(update={"max_new_tokens": tokens})
              for q in questions}
    first = session.answers([Question(f"{q['question_id']} turn 1", [Turn(role="user", text=q["turns"][0])], [],
                                      params[q["question_id"]], source=source) for q in questions])
    # FastChat strips each answer before it goes into the next turn's conversation and into the answer file.
    answers = {q["question_id"]: [a.strip()] for q, a in zip(questions, first, strict=True)}
    for q in questions:
        if "<image>" in answers[q["question_id"]][0] and len(q["turns"]) == 2:
            raise VlprefError(f"mtbench: question {q['question_id']}: the model's turn-1 answer contains '<image>', "
                              "which vlpref reads as an image placeholder, so it cannot go into the turn-2 chat")
    two = [q for q in questions if len(q["turns"]) == 2]
    second = session.answers([Question(f"{q['question_id']} turn 2", [
        Turn(role="user", text=q["turns"][0]), Turn(role="assistant", text=answers[q["question_id"]][0]),
        Turn(role="user", text=q["turns"][1])], [], params[q["question_id"]], source=source) for q in two])
    for q, a in zip(two, second, strict=True):
        answers[q["question_id"]].append(a.strip())
    return answers


def _check_text(question: dict, texts: list[str]) -> None:
    # The chat templates and the judge's OpenAI messages take no raw image placeholder in text-only MT-Bench.
    if any("<image>" in t for t in texts):
        raise VlprefError(f"mtbench: question {question['question_id']}: a turn contains '<image>', which vlpref "
                          "reads as an image placeholder; MT-Bench is text only")


def run(session: Session) -> dict:
    config = session.config
    questions = read_questions(session)
    for q in questions:
        _check_text(q, q["turns"])
    references = read_references(session, questions)
    answers = generate(session, questions)
    now = time.time()
    write_jsonl(session.out / "model_answer.jsonl", [
        {"question_id": q["question_id"],
         "answer_id": hashlib.sha256(f"{config.model}\0{q['question_id']}\0{answers[q['question_id']]}".encode())
         .hexdigest()[:22],  # stands in for FastChat's random shortuuid, stable across runs
         "model_id": config.model, "choices": [{"index": 0, "turns": answers[q["question_id"]]}], "tstamp": now}
        for q in questions])

    prompts, prompts_label = judge_prompts(session)
    judge_decoding = DecodingParams(temperature=JUDGE_TEMPERATURE, max_new_tokens=JUDGE_MAX_TOKENS)
    matches = []  # (question, turn, prompt name, user prompt); FastChat's order: turn 1 for all, then turn 2
    for turn in (1, 2):
        for q in questions:
            if turn > len(q["turns"]):
                continue
            qid, math_ = q["question_id"], q["category"] in NEED_REF_CATS
            name = ("single-math-v1" if math_ else "single-v1") + ("-multi-turn" if turn == 2 else "")
            a, ref = answers[qid], references.get(qid, [])
            fields = ({"question": q["turns"][0], "answer": a[0]} if turn == 1 else
                      {"question_1": q["turns"][0], "question_2": q["turns"][1], "answer_1": a[0], "answer_2": a[1]})
            if math_:
                fields["ref_answer_1"] = ref[0]
                if turn == 2:
                    fields["ref_answer_2"] = ref[1]
            try:
                user_prompt = prompts[name]["prompt_template"].format(**fields)
            except (KeyError, IndexError, ValueError) as error:
                names = ", ".join("{" + f + "}" for f in sorted(fields))
                raise VlprefError(f"mtbench: prompt {name!r}: its prompt_template does not fill in "
                                  f"({type(error).__name__}: {error}); FastChat's templates use {names}") from None
            matches.append((q, turn, name, user_prompt))
    replies = session.judge([
        JudgeRequest(f"question {q['question_id']} turn {turn}",
                     [{"role": "system", "content": prompts[name]["system_prompt"]},
                      {"role": "user", "content": user_prompt}], judge_decoding, item=f"{q['question_id']} turn {turn}")
        for q, turn, name, user_prompt in matches])

    judge_id = config.judge.judge_id()
    rows = [{"question_id": q["question_id"], "model": config.model, "judge": [judge_id, name],
             "user_prompt": user_prompt, "judgment": reply, "score": judge_rating(reply), "turn": turn, "tstamp": now}
            for (q, turn, name, user_prompt), reply in zip(matches, replies, strict=True)]
    write_jsonl(session.out / "judgment.jsonl", rows)

    try:
        results: dict = mtbench_scores(rows, question_ids={q["question_id"] for q in questions})[config.model]
    except ValueError as error:
        raise VlprefError(f"mtbench: {error} (judgments in {session.out / 'judgment.jsonl'})") from None
    if results["failures"]:
        session.log(f"mtbench: {results['failures']} judgment(s) had no [[rating]]; dropped from the means, as "
                    "FastChat drops them")
    by_category: dict[str, list[float]] = {}
    category = {q["question_id"]: q["category"] for q in questions}
    for row in rows:
        if row["score"] != FAILED:
            by_category.setdefault(category[row["question_id"]], []).append(row["score"])
    results["ours_per_category"] = {c: math.fsum(s) / len(s) for c, s in sorted(by_category.items())}
    results["judge_prompt"] = prompts_label
    return results
