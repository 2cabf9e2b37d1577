"""MM-Vet, LLaVA-Bench and MT-Bench end to end: the shipped world model answers fixtures in the official layouts, a
scripted OpenAI-compatible judge (vlpref's own server, over real HTTP) grades them, and the numbers match hand
computation, the output files are in the official layouts (`eval score` reads them back to the same numbers), the
official prompt files are used when given, and a rerun makes no model or judge call."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vlpref.errors import VlprefError
from vlpref.evaluation import run as run_module
from vlpref.evaluation.mmvet import PARAPHRASED_PROMPT
from vlpref.evaluation.mtbench import PARAPHRASED_PROMPTS
from vlpref.evaluation.run import EvalConfig, JudgeSettings, evaluate
from vlpref.evaluation.score import score
from vlpref.evaluation.scoring.llava_bench import PARAPHRASED_RULE, SYSTEM_PROMPT
from vlpref.evaluation.scoring.mmvet import MMVET_RETRY_SUFFIX
from vlpref.models.remote import RemoteEndpoint
from vlpref.models.vlm import Generation
from vlpref.serve import build_app, serve_in_thread

MODEL = "world:world-base"


def quiet(*_):
    pass


def png(path, color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)


def jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def judge():
    """A scripted judge: state["reply"](system, user, params) -> text; every request is recorded."""
    state = {"requests": [], "reply": None}

    def generate(chats, params):
        out = []
        for chat, p in zip(chats, params, strict=True):
            system = chat.turns[0].text if chat.turns[0].role == "system" else None
            user = chat.turns[-1].text
            state["requests"].append({"system": system, "user": user, "temperature": p.temperature,
                                      "max_tokens": p.max_new_tokens})
            out.append(Generation(text=state["reply"](system, user, p), token_ids=[1], finish_reason="stop"))
        return out

    with serve_in_thread(build_app("judge", generate, max_batch=4)) as url:
        yield RemoteEndpoint(base_url=url, model="judge", max_retries=0), state


def config(benchmark, data, endpoint, prompt=None):
    return EvalConfig(benchmark=benchmark, model=MODEL, data=str(data), max_new_tokens=8,
                      judge=JudgeSettings(endpoint=endpoint, prompt=prompt))


def assert_rerun_is_free(cfg, out, state, results):
    before = len(state["requests"])
    again = evaluate(cfg, out, log=quiet)
    assert len(state["requests"]) == before
    assert again["calls"]["judge_calls"] == 0 and again["calls"]["answers_generated"] == 0
    assert {k: v for k, v in again.items() if k != "calls"} == {k: v for k, v in results.items() if k != "calls"}


# -- MM-Vet -------------------------------------------------------------------------------------------------------
def test_mmvet_grades_with_the_official_retry_loop(tmp_path, judge):
    endpoint, state = judge
    data, out = tmp_path / "mm-vet", tmp_path / "out"
    png(data / "images" / "a.png")
    png(data / "images" / "b.png", (30, 30, 200))
    samples = {
        "v1_0": {"imagename": "a.png", "question": "Q-full: what colour?", "answer": "red", "capability": ["rec"]},
        "v1_1": {"imagename": "b.png", "question": "Q-half: what sum?", "answer": "3<AND>4",
                 "capability": ["ocr", "math"]},
        "v1_2": {"imagename": "a.png", "question": "Q-garbage: where?", "answer": "left<OR>right",
                 "capability": ["rec", "ocr"]},
        "v1_3": {"imagename": "b.png", "question": "Q-late: how many?", "answer": "2", "capability": ["rec"]},
    }
    (data / "mm-vet.json").write_text(json.dumps(samples))

    def reply(system, user, params):
        if "Q-full" in user:
            return "1.0"
        if "Q-half" in user:
            return "0.5 because"
        if "Q-late" in user:  # valid only from the third output on, the first asked at temperature 0.5
            return "0.8" if params.temperature >= 0.5 else "Partly"
        return "Correct"  # never a number: 5 invalid outputs, scored 0

    state["reply"] = reply
    cfg = config("mmvet", data, endpoint)
    results = evaluate(cfg, out, log=quiet)
    # scores 1.0, 0.5, 0 (5 invalid outputs), 0.8: total 100·2.3/4; rec (1.0 + 0 + 0.8)/3; ocr (0.5 + 0)/2
    assert results["total"] == pytest.approx(57.5) and results["n"] == 4
    assert results["per_capability"] == pytest.approx({"rec": 60.0, "ocr": 25.0, "math": 50.0})
    assert results["per_combination"] == pytest.approx({"rec": 90.0, "ocr_math": 50.0, "rec_ocr": 0.0})
    assert results["parse_failures"] == 1 and results["parse_failure_ids"] == ["v1_2"] and results["retried"] == 2
    assert results["judge_prompt"] == "paraphrase"

    # rounds: all 4, then the 2 invalid at 0.0 with the suffix, both at 0.5, then Q-garbage alone at 1.0 and 1.5
    asked = state["requests"]
    assert len(asked) == 4 + 2 + 2 + 1 + 1 and all(r["max_tokens"] == 3 and r["system"] is None for r in asked)
    garbage = [r for r in asked if "Q-garbage" in r["user"]]
    assert [r["temperature"] for r in garbage] == [0.0, 0.0, 0.5, 1.0, 1.5]
    assert [r["user"].endswith(MMVET_RETRY_SUFFIX) for r in garbage] == [False, True, True, True, True]
    answers = json.loads((out / "answers.json").read_text())
    assert list(answers) == list(samples) and all(isinstance(a, str) for a in answers.values())
    half = next(r["user"] for r in asked if "Q-half" in r["user"])
    assert half == PARAPHRASED_PROMPT + "\n" + f"Q-half: what sum? | 3 <AND> 4 | {answers['v1_1']} | "

    grades = json.loads((out / "grades.json").read_text())
    assert grades["v1_2"] == {"model": [endpoint.model + "@" + endpoint.base_url], "content": ["Correct"],
                              "score": [0.0]}
    assert grades["v1_3"]["content"] == ["0.8"] and grades["v1_1"]["score"] == [0.5]
    rescored = score("mmvet", judge=out / "grades.json", metadata=data / "mm-vet.json")
    assert rescored["total"] == pytest.approx(57.5) and rescored["std"] == 0.0
    assert rescored["per_capability"] == pytest.approx(results["per_capability"])

    assert_rerun_is_free(cfg, out, state, results)

    # The official prompt file is used as it is; the answers come from the journal, the grading is new.
    official = tmp_path / "mmvet_prompt.txt"
    official.write_text("OFFICIAL GRADER PROMPT\n")
    before = len(state["requests"])
    again = evaluate(config("mmvet", data, endpoint, str(official)), out, log=quiet)
    assert again["judge_prompt"] == "official file mmvet_prompt.txt" and again["total"] == pytest.approx(57.5)
    assert again["calls"]["answers_generated"] == 0 and len(state["requests"]) == before + 10
    assert state["requests"][-1]["user"].startswith("OFFICIAL GRADER PROMPT\n\nQ-garbage: where? | left <OR> right")


def test_mmvet_names_a_broken_sample(tmp_path, judge):
    endpoint, _ = judge
    (tmp_path / "mm-vet.json").write_text(json.dumps({"v1_0": {"imagename": "a.png", "question": "q",
                                                               "answer": "a"}}))
    with pytest.raises(VlprefError, match=r"mm-vet.json: sample 'v1_0' has no 'capability' field"):
        evaluate(config("mmvet", tmp_path, endpoint), tmp_path / "out", log=quiet)


# -- LLaVA-Bench --------------------------------------------------------------------------------------------------
def test_llava_bench_reviews_and_relative_score(tmp_path, judge):
    endpoint, state = judge
    data, out = tmp_path / "llava-bench", tmp_path / "out"
    png(data / "images" / "a.png")
    png(data / "images" / "b.png", (30, 30, 200))
    questions = [("L-conv-good: what is it?", "conv", "a.png"), ("L-detail: describe it.", "detail", "a.png"),
                 ("L-complex: why?", "complex", "b.png"), ("L-conv-bad: and then?", "conv", "b.png")]
    jsonl(data / "questions.jsonl", [{"question_id": i, "image": image, "text": text, "category": category}
                                     for i, (text, category, image) in enumerate(questions)])
    jsonl(data / "context.jsonl", [{"id": "a", "image": "a.png", "caption": "A red square."},
                                   {"id": "b", "image": "b.png", "caption": ["A blue square.", "On white."]}])
    jsonl(data / "answers_gpt4.jsonl", [{"question_id": i, "text": f"reference {i}", "answer_id": f"ref{i}",
                                         "model_id": "gpt-4-0314", "metadata": {}} for i in range(4)])
    replies = {"L-conv-good": "8 6\nAssistant 2 is vaguer.", "L-detail": "10 9\nBoth fine.",
               "L-complex": "7 7\nEqual.", "L-conv-bad": "8, 6\nA comma: three tokens, the official parser fails."}
    state["reply"] = lambda system, user, params: next(v for k, v in replies.items() if f"[Question]\n{k}" in user)
    cfg = config("llava-bench", data, endpoint)
    results = evaluate(cfg, out, log=quiet)
    # means over (8,6), (10,9), (7,7), (-1,-1): 6.0 and 5.25 -> 87.5; conv: 3.5 and 2.5 -> 71.4
    assert results["all"] == {"relative": 87.5, "reference": 60.0, "model": 52.5, "reviews": 4, "failures": 1}
    assert results["llava_bench_conv"] == {"relative": 71.4, "reference": 35.0, "model": 25.0, "reviews": 2,
                                           "failures": 1}
    assert results["llava_bench_detail"]["relative"] == 90.0 and results["llava_bench_complex"]["relative"] == 100.0
    assert results["judge_prompt"] == "paraphrase"

    asked = state["requests"]
    assert len(asked) == 4 and all(r["system"] == SYSTEM_PROMPT and r["temperature"] == 0.2 and
                                   r["max_tokens"] == 1024 for r in asked)
    answers = read_jsonl(out / "answers.jsonl")
    assert [a["question_id"] for a in answers] == [0, 1, 2, 3]
    assert set(answers[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert answers[2]["prompt"] == "L-complex: why?" and answers[2]["model_id"] == MODEL
    complex_ = next(r["user"] for r in asked if "L-complex" in r["user"])
    assert complex_ == ("[Context]\nA blue square.\nOn white.\n\n[Question]\nL-complex: why?\n\n"
                        "[Assistant 1]\nreference 2\n\n[End of Assistant 1]\n\n"
                        f"[Assistant 2]\n{answers[2]['text']}\n\n[End of Assistant 2]\n\n"
                        f"[System]\n{PARAPHRASED_RULE}\n\n")

    reviews = read_jsonl(out / "reviews.jsonl")
    assert reviews[2] == {"id": 3, "question_id": 2, "answer1_id": "ref2", "answer2_id": answers[2]["answer_id"],
                          "category": "llava_bench_complex", "content": "7 7\nEqual.", "tuple": [7.0, 7.0]}
    assert reviews[3]["tuple"] == [-1.0, -1.0]
    rescored = score("llava-bench", judge=out / "reviews.jsonl")
    assert rescored == {k: results[k] for k in rescored}

    assert_rerun_is_free(cfg, out, state, results)

    # rule.json: its prompt and role go into the review; the answers come from the journal.
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({f"llava_bench_{c}": {"role": "Helper", "prompt": f"RULE {c}"}
                                for c in ("conv", "detail", "complex")} | {"coding": {"role": "x", "prompt": "y"}}))
    state["reply"] = lambda system, user, params: "9 9"
    again = evaluate(config("llava-bench", data, endpoint, str(rule)), out, log=quiet)
    assert again["judge_prompt"] == "official file rule.json" and again["all"]["relative"] == 100.0
    assert again["calls"]["answers_generated"] == 0 and len(state["requests"]) == 8
    assert all("[Helper 1]\nreference" in r["user"] for r in state["requests"][4:])
    assert sorted(r["user"].rsplit("[System]\n", 1)[1] for r in state["requests"][4:]) == [
        "RULE complex\n\n", "RULE conv\n\n", "RULE conv\n\n", "RULE detail\n\n"]


# -- MT-Bench -----------------------------------------------------------------------------------------------------
QUESTIONS = [{"question_id": 81, "category": "writing", "turns": ["M-writing one", "M-writing two"]},
             {"question_id": 111, "category": "math", "turns": ["M-math one", "M-math two"]},
             {"question_id": 131, "category": "stem", "turns": ["M-stem one", "M-stem two"]}]
RATINGS = {("M-writing", 1): "Fine. Rating: [[8]]", ("M-writing", 2): "Rating: [[6]]",
           ("M-math", 1): "Wrong sum. Rating: [[4]]", ("M-math", 2): "Step [7] is right.",  # the [x] fallback
           ("M-stem", 1): "Rating: [[9]]", ("M-stem", 2): "Eight out of ten."}  # no bracket: -1, dropped


def mtbench_reply(system, user, params):
    turn = 2 if "<|The Start of Assistant A's Conversation with User|>" in user else 1
    return next(v for (k, t), v in RATINGS.items() if t == turn and f"{k} one" in user)


def test_mtbench_two_turns_judged_as_fastchat(tmp_path, judge, monkeypatch):
    endpoint, state = judge
    data, out = tmp_path / "mt_bench", tmp_path / "out"
    jsonl(data / "question.jsonl", QUESTIONS)
    jsonl(data / "reference_answer" / "gpt-4.jsonl", [
        {"question_id": 111, "answer_id": "r", "model_id": "gpt-4", "tstamp": 0.0,
         "choices": [{"index": 0, "turns": ["ref one", "ref two"]}]}])
    asked = []  # every generation request, to check turn 2's chat and the per-category decoding
    answers_method = run_module.Session.answers
    monkeypatch.setattr(run_module.Session, "answers", lambda self, qs: asked.extend(qs) or answers_method(self, qs))
    state["reply"] = mtbench_reply
    cfg = config("mtbench", data, endpoint)
    results = evaluate(cfg, out, log=quiet)
    # turn 1: 8, 4, 9 -> 7.0; turn 2: 6, 7 (and a -1, dropped) -> 6.5; all five kept: 34 / 5
    assert results["turn_1"] == 7.0 and results["turn_2"] == 6.5 and results["average"] == pytest.approx(6.8)
    assert results["judgments"] == 5 and results["failures"] == 1
    assert results["ours_per_category"] == {"math": 5.5, "stem": 9.0, "writing": 7.0}
    assert results["judge_prompt"] == "paraphrase"

    model_answers = read_jsonl(out / "model_answer.jsonl")
    assert [a["question_id"] for a in model_answers] == [81, 111, 131]
    assert set(model_answers[0]) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    by_id = {a["question_id"]: a["choices"][0]["turns"] for a in model_answers}
    assert all(a["choices"][0]["index"] == 0 and len(a["choices"][0]["turns"]) == 2 for a in model_answers)
    # FastChat's temperatures, a seed where sampled, text-only chats; turn 2 holds the model's own turn-1 answer
    first = {q.id: q for q in asked}
    assert [(first[f"{i} turn 1"].decoding.temperature, first[f"{i} turn 1"].decoding.seed) for i in (81, 111, 131)
            ] == [(0.7, 81), (0.0, None), (0.1, 131)]
    assert all(q.images == [] and q.decoding.max_new_tokens == 8 for q in asked)
    assert [(t.role, t.text) for t in first["81 turn 2"].turns] == [
        ("user", "M-writing one"), ("assistant", by_id[81][0]), ("user", "M-writing two")]

    requests = state["requests"]
    assert len(requests) == 6 and all(r["temperature"] == 0.0 and r["max_tokens"] == 2048 for r in requests)
    math2 = next(r for r in requests if "M-math one" in r["user"] and "Assistant A's" in r["user"])
    assert math2["system"] == PARAPHRASED_PROMPTS["single-math-v1-multi-turn"]["system_prompt"]
    assert "### Reference answer:\nref one" in math2["user"] and "### Reference answer:\nref two" in math2["user"]
    assert f"### Assistant A:\n{by_id[111][1]}\n\n<|The End of" in math2["user"]
    writing1 = next(r for r in requests if "M-writing one" in r["user"] and "Assistant A's" not in r["user"])
    assert writing1["system"] == "You are a helpful assistant." and "Reference" not in writing1["user"]

    judgments = read_jsonl(out / "judgment.jsonl")
    assert set(judgments[0]) == {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn",
                                 "tstamp"}
    row = next(j for j in judgments if j["question_id"] == 111 and j["turn"] == 2)
    assert row["judge"] == [endpoint.model + "@" + endpoint.base_url, "single-math-v1-multi-turn"]
    assert row["score"] == 7 and row["model"] == MODEL and row["user_prompt"] == math2["user"]
    rescored = score("mtbench", judge=out / "judgment.jsonl")[MODEL]
    assert rescored == {k: results[k] for k in rescored}

    assert_rerun_is_free(cfg, out, state, results)

    # FastChat's judge_prompts.jsonl: its four prompts by name
    prompts = tmp_path / "judge_prompts.jsonl"
    jsonl(prompts, [{"name": name, "type": "single", "system_prompt": f"SYS {name}",
                     "prompt_template": template, "output_format": "[[rating]]"} for name, template in [
        ("pair-v2", "ignored {question}"), ("single-v1", "T1 {question} | {answer}"),
        ("single-math-v1", "M1 {question} | {ref_answer_1} | {answer}"),
        ("single-v1-multi-turn", "T2 {question_1} {answer_1} {question_2} {answer_2}"),
        ("single-math-v1-multi-turn", "M2 {question_1} {ref_answer_1} {answer_2} "
         "<|The Start of Assistant A's Conversation with User|>")]])
    again = evaluate(config("mtbench", data, endpoint, str(prompts)), out, log=quiet)
    assert again["judge_prompt"] == "official file judge_prompts.jsonl"
    assert again["calls"]["answers_generated"] == 0 and len(state["requests"]) == 12
    systems = {r["system"] for r in state["requests"][6:]}
    assert systems == {"SYS single-v1", "SYS single-math-v1", "SYS single-v1-multi-turn",
                       "SYS single-math-v1-multi-turn"}
    assert any(r["user"] == f"M1 M-math one | ref one | {by_id[111][0]}" for r in state["requests"][6:])

    # the math question needs the reference answers: without them, the file is named before any model call
    (data / "reference_answer" / "gpt-4.jsonl").unlink()
    with pytest.raises(VlprefError, match=r"reference_answer/gpt-4.jsonl does not exist; the math questions"):
        evaluate(cfg, tmp_path / "out2", log=quiet)


# -- prompt styles ------------------------------------------------------------------------------------------------
def test_lmms_eval_style_prompts_and_token_limits(tmp_path, judge, monkeypatch):
    """`style: lmms-eval`: MM-Vet's think-step-by-step pre-prompt; LLaVA-Bench's 4096-token limit."""
    endpoint, state = judge
    asked = []
    monkeypatch.setattr(run_module.Session, "answers", lambda self, qs: asked.extend(qs) or ["an answer"] * len(qs))
    state["reply"] = lambda system, user, params: "1.0" if system is None else "8 8"
    mmvet, bench = tmp_path / "mm-vet", tmp_path / "bench"
    png(mmvet / "images" / "a.png")
    (mmvet / "mm-vet.json").write_text(json.dumps({"v1_0": {"imagename": "a.png", "question": "What?",
                                                            "answer": "a", "capability": ["rec"]}}))
    jsonl(bench / "questions.jsonl", [{"question_id": 0, "image": "a.png", "text": "Why?", "category": "conv"}])
    jsonl(bench / "context.jsonl", [{"image": "a.png", "caption": "A square."}])
    jsonl(bench / "answers_gpt4.jsonl", [{"question_id": 0, "text": "ref", "answer_id": "r0"}])
    for benchmark, data in (("mmvet", mmvet), ("llava-bench", bench)):
        cfg = EvalConfig(benchmark=benchmark, data=str(data), style="lmms-eval", judge=JudgeSettings(endpoint=endpoint))
        evaluate(cfg, tmp_path / benchmark, log=quiet)
    assert asked[0].turns[0].text == ("<image>\nFirst please perform reasoning, and think step by step to provide "
                                      "best answer to the following question: \n\nWhat?")
    assert asked[0].decoding.max_new_tokens == 1024 and asked[0].images == [mmvet / "images" / "a.png"]
    assert asked[1].turns[0].text == "<image>\nWhy?" and asked[1].decoding.max_new_tokens == 4096
    assert asked[1].decoding.temperature == 0.0
