"""LLaVA-Bench (In-the-Wild) from the official files, reviewed by a judge as LLaVA's `eval_gpt_review_bench.py` and
scored as `summarize_gpt_review.py` (benchmarks.md §5).

    vlpref eval --benchmark llava-bench --model llava-hf/llava-1.5-7b-hf --data ~/llava-bench-in-the-wild \\
        --judge-url https://api.openai.com/v1 --judge-model gpt-4-0314 \\
        --judge-prompt ~/LLaVA/llava/eval/table/rule.json --out runs/eval/llava-bench

DATA is a copy of `liuhaotian/llava-bench-in-the-wild`: `questions.jsonl` (question_id, image, text, category),
`context.jsonl` (image, caption), `answers_gpt4.jsonl` (question_id, text, answer_id: the GPT-4 reference answers,
line by line in the order of the questions) and `images/` (or --images).

Prompt: `<image>\\n{text}`, greedy (LLaVA-1.5's llavabench.sh, `model_vqa`), at most 1024 new tokens; `style`
`lmms-eval` allows 4096 (lmms-eval's llava_in_the_wild task), the prompt being the same. The answers are written to
OUT/answers.jsonl (question_id, prompt, text, answer_id, model_id, metadata: LLaVA's layout).

Judge: for each question the system message `SYSTEM_PROMPT` and a user message with the caption, the question, the
GPT-4 reference as Assistant 1 and the model's answer as Assistant 2, then the rule (`review_requests`);
temperature 0.2, at most 1024 tokens. The rule is `judge.prompt` when given: LLaVA's `llava/eval/table/rule.json`
(its `llava_bench_conv`, `_detail` and `_complex` entries, each with `prompt` and `role`); only then are the numbers
comparable with published ones. Otherwise `PARAPHRASED_RULE` (our wording of the same instructions) with role
"Assistant" for all three categories. A caption stored as one string is used as it is (`caption_text`; the
official script's `'\\n'.join` would put a newline between its characters).

Reviews go to OUT/reviews.jsonl (id, question_id, answer1_id, answer2_id, category, content, tuple: the official
review layout), which `vlpref eval score --benchmark llava-bench` reads. Results: per category and `all`, the
relative score (model / reference × 100, the reported number is `all/relative`), both means × 10, the reviews
averaged and the unparseable reviews (`failures`), kept in the means as (-1, -1) as the official summary keeps them;
`judge_prompt`: "paraphrase" or "official file <name>".
"""

from __future__ import annotations

import hashlib

from vlpref.data.files import read_json, read_jsonl, write_jsonl
from vlpref.data.schema import DecodingParams, Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import JudgeRequest, Question, Session, greedy
from vlpref.evaluation.scoring.llava_bench import (
    CATEGORIES,
    JUDGE_MAX_TOKENS,
    JUDGE_TEMPERATURE,
    PARAPHRASED_RULE,
    review_record,
    review_requests,
    summarize,
)

MAX_NEW_TOKENS = 1024
MAX_NEW_TOKENS_LMMS_EVAL = 4096
QUESTION_FIELDS = ("question_id", "image", "text", "category")


def read_files(session: Session) -> tuple[list[dict], list[dict], list[dict]]:
    """questions, contexts and reference answers; questions and references cut to `limit` together, since the
    official pairing is line by line."""
    data = session.data()
    questions = read_jsonl(data / "questions.jsonl", "llava-bench: the questions (questions.jsonl)")
    contexts = read_jsonl(data / "context.jsonl", "llava-bench: the image captions (context.jsonl)")
    references = read_jsonl(data / "answers_gpt4.jsonl", "llava-bench: the GPT-4 reference answers "
                            "(answers_gpt4.jsonl)")
    for number, row in enumerate(questions, start=1):
        missing = [k for k in QUESTION_FIELDS if k not in row]
        if missing:
            raise VlprefError(f"{data / 'questions.jsonl'}, line {number}: no {missing[0]!r} field")
        if row["category"] not in CATEGORIES:
            raise VlprefError(f"{data / 'questions.jsonl'}, line {number}: category {row['category']!r} is not one "
                              f"of {', '.join(CATEGORIES)}")
    if len(references) != len(questions):
        raise VlprefError(f"{data / 'answers_gpt4.jsonl'}: {len(references)} reference answers for {len(questions)} "
                          "questions; the official review pairs them line by line")
    return session.limited(questions), contexts, session.limited(references)


def rules(session: Session) -> tuple[dict, str]:
    """(rules keyed llava_bench_<category>, label): rule.json from judge.prompt, else our paraphrase."""
    path = session.judge_prompt_file()
    if path is None:
        return {f"llava_bench_{c}": {"prompt": PARAPHRASED_RULE, "role": "Assistant"} for c in CATEGORIES}, "paraphrase"
    loaded = read_json(path, "judge.prompt")
    if not isinstance(loaded, dict):
        raise VlprefError(f"judge.prompt: {path} should be LLaVA's rule.json (an object keyed by rule name)")
    for category in CATEGORIES:
        name = f"llava_bench_{category}"
        rule = loaded.get(name)
        if not isinstance(rule, dict):
            raise VlprefError(f"judge.prompt: {path} has no {name!r} entry (is it LLaVA's llava/eval/table/rule.json?)")
        for field in ("prompt", "role"):
            if not isinstance(rule.get(field), str):
                raise VlprefError(f"judge.prompt: {path}, entry {name!r}: no {field!r} string")
    return loaded, f"official file {path.name}"


def answer_id(model: str, question_id, text: str) -> str:
    """A stable stand-in for the shortuuid LLaVA draws: the same answer gets the same id on every run."""
    return hashlib.sha256(f"{model}\0{question_id}\0{text}".encode()).hexdigest()[:22]


def run(session: Session) -> dict:
    config, data = session.config, session.data()
    questions, contexts, references = read_files(session)
    images = session.images_root("images")
    default_tokens = MAX_NEW_TOKENS_LMMS_EVAL if config.style == "lmms-eval" else MAX_NEW_TOKENS
    decoding = greedy(session.max_new_tokens(default_tokens))
    prompts = [Question(str(q["question_id"]), [Turn(role="user", text="<image>\n" + q["text"])],
                        [images / q["image"]], decoding, source=str(data / "questions.jsonl")) for q in questions]
    texts = session.answers(prompts)
    answers = [{"question_id": q["question_id"], "prompt": q["text"], "text": text,
                "answer_id": answer_id(config.model, q["question_id"], text), "model_id": config.model,
                "metadata": {}} for q, text in zip(questions, texts, strict=True)]
    write_jsonl(session.out / "answers.jsonl", answers)

    rule_set, rule_label = rules(session)
    try:
        requests = review_requests(questions, contexts, references, answers, rule_set)
    except ValueError as error:  # names the line, question and field; add which files were paired
        raise VlprefError(f"llava-bench: {error} (questions.jsonl, context.jsonl and answers_gpt4.jsonl in {data}, "
                          f"answers in {session.out / 'answers.jsonl'})") from None
    judge_decoding = DecodingParams(temperature=JUDGE_TEMPERATURE, max_new_tokens=JUDGE_MAX_TOKENS)
    replies = session.judge([JudgeRequest(f"question {r['question_id']}", r["messages"], judge_decoding,
                                          item=str(r["question_id"])) for r in requests])
    for q, ref in zip(questions, references, strict=True):
        session.detail(str(q["question_id"]), category=q.get("category"), reference=ref.get("text"))
    reviews = [review_record(request, reply) for request, reply in zip(requests, replies, strict=True)]
    write_jsonl(session.out / "reviews.jsonl", reviews)

    try:
        results: dict = summarize(reviews)
    except ValueError as error:
        raise VlprefError(f"llava-bench: {error} (reviews in {session.out / 'reviews.jsonl'})") from None
    failures = results["all"]["failures"]
    if failures:
        session.log(f"llava-bench: {failures} review(s) had no 'score score' first line; kept as (-1, -1), as the "
                    "official summary keeps them")
    results["judge_prompt"] = rule_label
    results["style"] = config.style
    return results
