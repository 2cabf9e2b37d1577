"""LLaVA-Bench (In-the-Wild): the GPT-4 review prompt, the official score parser and summary (benchmarks.md §5).

    >>> parse_score("8 6\\nAssistant 2 misses the cut mangosteen.")
    (8.0, 6.0)
    >>> parse_score("8, 6")  # ',' becomes ' ', leaving '8  6': three tokens, so the official parser gives up
    (-1.0, -1.0)
    >>> reviews = [{"category": "llava_bench_conv", "tuple": [8, 6]},
    ...            {"category": "llava_bench_detail", "tuple": [10, 9]}]
    >>> summarize(reviews)["all"]  # means 9.0 and 7.5: 7.5 / 9.0 = 83.3 %
    {'relative': 83.3, 'reference': 90.0, 'model': 75.0, 'reviews': 2, 'failures': 0}

The official pipeline (haotian-liu/LLaVA `eval_gpt_review_bench.py` + `summarize_gpt_review.py`), step by step:
1. `questions.jsonl`, the GPT-4 reference answers and the model's answers are zipped line by line; the context
   (caption) is looked up by image. `review_requests` does the same but refuses misaligned lines instead of
   silently pairing the wrong answers.
2. The judge (`JUDGE_MODEL`, temperature 0.2, max_tokens 1024) sees `SYSTEM_PROMPT` and `review_prompt(...)`.
   Assistant 1 is always the GPT-4 reference, Assistant 2 the model under test.
3. `parse_score` reads "score1 score2" from the judge's first line; anything else is the failure pair (-1, -1).
4. `summarize`: per category and over all reviews, the mean of each score rounded to 3 decimals, then
   relative = model / reference × 100 (1 decimal) and both means × 10 (1 decimal).

Official behaviour kept on purpose, and where lmms-eval differs:
- Parse failures stay in the means as (-1, -1), which drags both means down; `summarize` counts them in
  `failures` so they are never silent, and `drop_failures=True` leaves them out (not the official number).
- lmms-eval judges with gpt-4o-2024-11-20 and parses the first two numbers on line 1 (after replacing ',' and ';'),
  so "8, 6" scores there but fails here.

The rule text ("[System]" block) is not shipped: benchmarks.md only paraphrases it. Pass the verbatim `prompt` and
`role` of `rule.json`'s `llava_bench_<category>` entries for comparable numbers; `PARAPHRASED_RULE` is our own
wording of the same instructions, for runs that need no parity with published scores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

JUDGE_MODEL = "gpt-4-0314"  # hard-coded in the official script; newer judges move the score
JUDGE_TEMPERATURE = 0.2
JUDGE_MAX_TOKENS = 1024
CATEGORIES = ("conv", "detail", "complex")
# the judge's system message, as given in benchmarks.md §5.3; a protocol constant, not prose of ours
SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
FAILED = (-1.0, -1.0)  # the official parser's failure value, kept in the averages by the official summary

# Our paraphrase of rule.json's llava_bench_{conv,detail,complex} prompt (all three are identical there). Every
# element is kept (two assistants, the image given as a few sentences, the four criteria, the 1-10 scale, the
# two-scores-first-line format, the unbiased/order-blind explanation), but it is not byte-identical.
PARAPHRASED_RULE = (
    "Please give feedback on how two AI assistants answered the user question shown above. The user asked the "
    "question while looking at an image; in place of the image you are given a few sentences describing it.\n"
    "Rate how helpful, relevant, accurate and detailed each answer is. Give each assistant one overall score from "
    "1 to 10, where a higher score means better overall performance.\n"
    "On the first line, write only the two scores, Assistant 1's first and then Assistant 2's, separated by a "
    "single space.\n"
    "From the next line on, explain your evaluation in full. Avoid any bias, and make sure the order in which the "
    "answers were presented does not sway your judgment."
)


def caption_text(caption: str | Sequence[str], *, join_characters: bool = False) -> str:
    """The [Context] block: a list of sentences joined with newlines, a plain string as it is.

    The official script always runs `'\\n'.join(caption)`. Public copies of the HF `context.jsonl` store `caption`
    as one string, on which that join puts a newline between every character; `join_characters=True` reproduces
    that literally (whether the published scores were judged that way is not verified).
    """
    if isinstance(caption, str):
        return "\n".join(caption) if join_characters else caption
    return "\n".join(caption)


def review_prompt(caption: str, question: str, reference_answer: str, model_answer: str, rule_prompt: str,
                  role: str = "Assistant") -> str:
    """The judge's user message; `role` and `rule_prompt` are the `role` and `prompt` of the rule.json entry."""
    return (f"[Context]\n{caption}\n\n"
            f"[Question]\n{question}\n\n"
            f"[{role} 1]\n{reference_answer}\n\n[End of {role} 1]\n\n"
            f"[{role} 2]\n{model_answer}\n\n[End of {role} 2]\n\n"
            f"[System]\n{rule_prompt}\n\n")


def _field(record: Mapping, key: str, what: str):
    if key not in record:
        raise ValueError(f"{what} has no '{key}' field: {dict(record)!r}"[:300])
    return record[key]


def review_requests(questions: Sequence[Mapping], contexts: Sequence[Mapping], reference_answers: Sequence[Mapping],
                    model_answers: Sequence[Mapping], rules: Mapping[str, Mapping], *,
                    join_caption_characters: bool = False) -> list[dict]:
    """One judge request per question, in the official review-file layout plus the chat `messages` to send.

    Lines of the three files are paired by position, as the official script does, but every line must carry the
    same `question_id` in all three (the official script never checks, so a reordered answer file is scored
    against the wrong questions). `rules` is rule.json's content, keyed `llava_bench_<category>`.
    """
    if not len(questions) == len(reference_answers) == len(model_answers):
        raise ValueError(f"{len(questions)} questions, {len(reference_answers)} reference answers and "
                         f"{len(model_answers)} model answers: the files are paired line by line")
    by_image = {_field(c, "image", "context line"): c for c in contexts}
    requests = []
    for line, (q, ref, ans) in enumerate(zip(questions, reference_answers, model_answers, strict=True), start=1):
        qid = _field(q, "question_id", f"question line {line}")
        ids = (_field(ref, "question_id", f"reference answer line {line}"),
               _field(ans, "question_id", f"model answer line {line}"))
        if ids != (qid, qid):
            raise ValueError(f"line {line}: question_id {qid!r} but reference answer {ids[0]!r} and model answer "
                             f"{ids[1]!r}; the three files must list the questions in the same order")
        image = _field(q, "image", f"question {qid}")
        if image not in by_image:
            raise ValueError(f"question {qid}: no context line for image {image!r}")
        category = "llava_bench_" + _field(q, "category", f"question {qid}")
        if category not in rules:
            raise ValueError(f"question {qid}: no rule for category {category!r} (have {sorted(rules)})")
        rule = rules[category]
        caption = caption_text(_field(by_image[image], "caption", f"context of {image!r}"),
                               join_characters=join_caption_characters)
        content = review_prompt(
            caption, _field(q, "text", f"question {qid}"), _field(ref, "text", f"reference answer {qid}"),
            _field(ans, "text", f"model answer {qid}"), _field(rule, "prompt", f"rule {category!r}"),
            _field(rule, "role", f"rule {category!r}"))
        requests.append({
            "id": line, "question_id": qid,
            # the official script falls back to question_id for the reference only and crashes without a model
            # answer_id; we fall back for both
            "answer1_id": ref.get("answer_id", qid), "answer2_id": ans.get("answer_id", qid),
            "category": category,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}],
        })
    return requests


def parse_score(review: str) -> tuple[float, float]:
    """The official parser: first line, ',' -> ' ', split on single spaces; exactly two tokens that `float`
    accepts give (reference, model); anything else gives `FAILED` = (-1.0, -1.0).

    Quirks kept: "8, 6" and "8 6 " (three tokens) fail, "8\\t6" fails (one token), "8 6\\r" works (float strips).
    """
    tokens = review.split("\n")[0].replace(",", " ").split(" ")
    if len(tokens) != 2:
        return FAILED
    try:
        return (float(tokens[0]), float(tokens[1]))
    except ValueError:
        return FAILED


def review_record(request: Mapping, judge_text: str) -> dict:
    """The official review-file line for a request of `review_requests` and the judge's reply."""
    record = {k: v for k, v in request.items() if k != "messages"}
    record["content"] = judge_text
    record["tuple"] = list(parse_score(judge_text))
    return record


def _pair(review: Mapping, index: int) -> tuple[float, float]:
    # `score` is the older review files' name for the pair (the official summary reads it where `tuple` is absent)
    pair = review.get("tuple", review.get("score")) if isinstance(review, Mapping) else None
    ok = (isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2
          and all(isinstance(x, int | float) and not isinstance(x, bool) for x in pair))
    if not ok:
        qid = review.get("question_id") if isinstance(review, Mapping) else None
        raise ValueError(f"review {index} (question_id {qid!r}): 'tuple' (or 'score') must be two numbers, "
                         f"got {pair!r}")
    return (float(pair[0]), float(pair[1]))


def _in_order(values) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


def summarize(reviews: Sequence[Mapping], *, drop_failures: bool = False) -> dict[str, dict]:
    """Per category (the reviews' `category`, e.g. 'llava_bench_conv') and 'all', sorted by name as printed:
    `relative` = round(model / reference × 100, 1), `reference` and `model` = round(mean × 10, 1), where each mean
    is rounded to 3 decimals first (official order); `reviews` = pairs averaged, `failures` = (-1, -1) pairs seen.

    The ×10 means are rounded to 1 decimal as the newer summarize script prints them (benchmarks.md gives them
    unrounded). The reported LLaVA-Bench number is `summarize(...)["all"]["relative"]`. Reviews without a
    `category` count in 'all' only, as in the official script. A category with no reviews is absent.
    """
    if not reviews:
        raise ValueError("no reviews to summarize")
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for i, review in enumerate(reviews):
        pair = _pair(review, i)
        if "category" in review:
            groups[review["category"]].append(pair)
        groups["all"].append(pair)
    out = {}
    for name in sorted(groups):
        failures = sum(p == FAILED for p in groups[name])
        pairs = [p for p in groups[name] if not (drop_failures and p == FAILED)]
        if not pairs:
            raise ValueError(f"category {name!r}: all {failures} reviews failed to parse; nothing to average")
        # Summed one review after another in file order, as the official `np.asarray(v).mean(0)` does (numpy adds
        # the rows of a column sequentially). With decimal judge scores an exact sum (math.fsum) differs in the last
        # bit, and about 2% of files then round the 3-decimal mean, and the relative score, the other way.
        reference = round(_in_order(p[0] for p in pairs) / len(pairs), 3)
        model = round(_in_order(p[1] for p in pairs) / len(pairs), 3)
        if reference == 0:
            raise ValueError(f"category {name!r}: mean reference score rounds to 0; the relative score is undefined")
        out[name] = {"relative": round(model / reference * 100, 1), "reference": round(reference * 10, 1),
                     "model": round(model * 10, 1), "reviews": len(pairs), "failures": failures}
    return out
