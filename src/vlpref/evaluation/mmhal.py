"""MMHal-Bench (LLaVA-RLHF) from the official response template, judged by a text-only model (benchmarks.md §3).

    vlpref eval --benchmark mmhal --model runs/dpo/model --data MMHal-Bench \\
        --judge-url https://api.openai.com/v1 --judge-model gpt-4o --judge-prompt eval_gpt_mmhal_template.txt \\
        --out runs/eval/mmhal

DATA holds `response_template.json` (a JSON array of 96 records: question_type, image_id, image_src, image_content,
question, gt_answer, model_answer) and the images: a record's `image_path` (relative to DATA) when it has one, else
images/<the file name of image_src>.

Prompt: the image, then the question with nothing added (the official shell script passes an empty --test-prompt).
Greedy, at most 1024 new tokens. The judge (the official one is text-only GPT-4: it sees the image's object labels,
not the image) gets the template filled with the image contents, question, human answer and model answer; pass the
official template string as `judge.prompt` (a file) for comparable numbers, else our paraphrase is used
(`vlpref.evaluation.scoring.mmhal`). Temperature 0. The rating is the one 'rating: k' in the reply (none or
several: 0, as the official script scores it, and counted in `parse_failures`).

Writes OUT/response.json (the template with `model_answer` filled) and OUT/evaluation.json (the judge's replies, in
order), which `vlpref eval score --benchmark mmhal --answers OUT/response.json --judge OUT/evaluation.json` reads.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from vlpref.data.files import read_json
from vlpref.data.schema import DecodingParams, Turn
from vlpref.errors import VlprefError
from vlpref.evaluation.run import JudgeRequest, Question, Session, greedy
from vlpref.evaluation.scoring.mmhal import mmhal_judge_prompt, mmhal_rating, score_mmhal

MAX_NEW_TOKENS = 1024
JUDGE_DECODING = DecodingParams(temperature=0.0, max_new_tokens=1024)
FIELDS = ("question_type", "image_content", "question", "gt_answer")


def _image(session: Session, record: dict, index: int):
    if record.get("image_path"):
        return session.data() / record["image_path"]
    if not record.get("image_src"):
        raise VlprefError(f"mmhal: response_template.json, record {index}: neither image_path nor image_src")
    return session.images_root("images") / PurePosixPath(record["image_src"]).name


def run(session: Session) -> dict:
    path = session.data() / "response_template.json"
    records = read_json(path, "mmhal response template")
    if not isinstance(records, list):
        raise VlprefError(f"mmhal: {path}: expected a JSON array of records")
    records = session.limited(records)
    for i, record in enumerate(records):
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise VlprefError(f"mmhal: {path}, record {i}: no {missing[0]!r} field")

    questions = [Question(f"mmhal:{i}", [Turn(role="user", text="<image>\n" + r["question"])], [_image(session, r, i)],
                          greedy(session.max_new_tokens(MAX_NEW_TOKENS)), source=str(path))
                 for i, r in enumerate(records)]
    filled = [{**r, "model_answer": a} for r, a in zip(records, session.answers(questions), strict=True)]
    (session.out / "response.json").write_text(json.dumps(filled, indent=2, ensure_ascii=False), encoding="utf-8")

    template_file = session.judge_prompt_file()
    template = template_file.read_text(encoding="utf-8") if template_file else None
    requests = [JudgeRequest(f"mmhal:{i}", [{"role": "user", "content": mmhal_judge_prompt(r, template=template)}],
                             JUDGE_DECODING) for i, r in enumerate(filled)]
    replies = session.judge(requests)
    (session.out / "evaluation.json").write_text(json.dumps(replies, indent=2, ensure_ascii=False), encoding="utf-8")

    results = score_mmhal(filled, replies)
    for i, (record, reply) in enumerate(zip(filled, replies, strict=True)):
        session.detail(f"mmhal:{i}", question_type=record["question_type"], reference=record["gt_answer"],
                       rating=mmhal_rating(reply))
    results["judge_prompt"] = f"official file {template_file.name}" if template_file else "paraphrase"
    return results
