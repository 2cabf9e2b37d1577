"""`vlpref eval --benchmark ...` on fixtures in the official layouts: the answers reach the official scorers, the
numbers match hand computation, answers are written in the official layouts (and `eval score` reads them back to
the same numbers), a rerun makes no model or judge call, and bad input names its file and record.

Most tests script the model (a stand-in `generate` answering by question), so the expected numbers can be worked
out by hand; one runs the shipped world model for real."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from vlpref.errors import VlprefError
from vlpref.evaluation import run as run_module
from vlpref.evaluation.run import EvalConfig, JudgeSettings, evaluate
from vlpref.evaluation.score import score
from vlpref.models.remote import RemoteEndpoint
from vlpref.models.vlm import Generation
from vlpref.serve import build_app, serve_in_thread


def png(path, color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)


class ScriptedModel:
    """Answers by the last user turn's text (image placeholder removed); records every prompt it is asked."""

    def __init__(self, rule):
        self.rule, self.asked = rule, []

    def generate(self, chats, params, batch_size=8):
        out = []
        for chat in chats:
            prompt = chat.turns[-1].text.replace("<image>\n", "")
            self.asked.append(prompt)
            out.append(Generation(text=self.rule(prompt), token_ids=[1], finish_reason="stop"))
        return out


@pytest.fixture
def scripted(monkeypatch):
    def install(rule):
        model = ScriptedModel(rule)
        monkeypatch.setattr(run_module.Session, "vlm", lambda self: model)
        return model

    return install


def jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# -- POPE ---------------------------------------------------------------------------------------------------------

def pope_data(root):
    for name in ("a.jpg", "b.jpg"):
        png(root / "val2014" / name)
    questions = {"random": [("a.jpg", "dog", "yes"), ("a.jpg", "cat", "no"), ("b.jpg", "car", "yes"),
                            ("b.jpg", "bus", "no")],
                 "popular": [("a.jpg", "dog", "yes"), ("a.jpg", "cup", "no"), ("b.jpg", "car", "yes"),
                             ("b.jpg", "tie", "no")]}
    for split, rows in questions.items():
        jsonl(root / f"coco_pope_{split}.json",
              [{"question_id": i + 1, "image": image, "text": f"Is there a {obj} in the image?", "label": label}
               for i, (image, obj, label) in enumerate(rows)])


def pope_rule(prompt):
    # says yes to dog, cat and cup; no to car; "Yes." to tie (lmms-eval's exact match will not accept "yes.")
    obj = re.search(r"Is there a (\w+)", prompt).group(1)
    return {"dog": "Yes, there is a dog.", "cat": "Yes", "cup": "yes", "car": "No, there is not.",
            "bus": "There is no bus.", "tie": "yes."}[obj]


def test_pope_by_hand_and_rescored(tmp_path, scripted):
    pope_data(tmp_path / "pope")
    model = scripted(pope_rule)
    config = EvalConfig(benchmark="pope", data=str(tmp_path / "pope"))
    results = evaluate(config, tmp_path / "out", log=lambda *_: None)
    # random: preds yes(dog,+) yes(cat,-) no(car,+) no(bus,-): TP1 FP1 TN1 FN1 -> P=R=F1=0.5, acc 0.5, yes 0.5
    # popular: yes(dog,+) yes(cup,-) no(car,+) yes(tie,-): TP1 FP2 TN0 FN1 -> P=1/3 R=1/2 F1=0.4, acc 0.25, yes 0.75
    rnd, pop = results["splits"]["random"], results["splits"]["popular"]
    assert (rnd["f1"], rnd["accuracy"], rnd["yes_ratio"]) == (0.5, 0.5, 0.5)
    assert pop["precision"] == pytest.approx(1 / 3) and pop["f1"] == pytest.approx(0.4)
    assert pop["accuracy"] == 0.25 and pop["yes_ratio"] == 0.75
    assert results["f1_mean"] is None  # LLaVA's number needs all three COCO splits; here there are two
    # pooled over both splits: TP 2 (dog twice), FP 3 (cat, cup, tie), TN 1 (bus), FN 2 (car twice): F1 = 4/9
    assert results["pooled"]["f1"] == pytest.approx(4 / 9) and results["pooled"]["n"] == 8
    assert results["question_files"]["coco_pope_random.json"]["version"] == "unknown"
    # LLaVA's prompt; dog and car are asked once although both splits hold them
    assert model.asked[0] == "Is there a dog in the image?\nAnswer the question using a single word or phrase."
    assert len(model.asked) == 6 and results["calls"]["answers_generated"] == 6
    # the answers file is LLaVA's layout and `eval score` gives the same numbers
    rescored = score("pope", answers=tmp_path / "out" / "answers" / "popular.jsonl",
                     labels=[tmp_path / "pope" / "coco_pope_popular.json"])
    assert rescored["splits"]["popular"] == pop
    # and the whole answers folder it writes, against the question files' folder, gives every split
    folder = score("pope", answers=tmp_path / "out" / "answers", labels=[tmp_path / "pope"])
    assert folder["splits"] == results["splits"] and folder["pooled"] == results["pooled"]
    # a rerun generates nothing
    again = evaluate(config, tmp_path / "out", log=lambda *_: None)
    assert len(model.asked) == 6 and again["calls"] == {"answers_generated": 0, "answers_cached": 6,
                                                        "judge_calls": 0, "judge_cached": 0}
    assert again["splits"] == results["splits"]
    # with all three COCO splits, LLaVA-1.5's single number: the mean of the three F1s
    (tmp_path / "pope" / "coco_pope_adversarial.json").write_text(
        (tmp_path / "pope" / "coco_pope_popular.json").read_text())
    three = evaluate(config, tmp_path / "out3", log=lambda *_: None)
    assert three["f1_mean"] == pytest.approx((0.5 + 0.4 + 0.4) / 3)


def test_pope_lmms_eval_scoring_and_official_prompt(tmp_path, scripted):
    pope_data(tmp_path / "pope")
    model = scripted(pope_rule)
    results = evaluate(EvalConfig(benchmark="pope", data=str(tmp_path / "pope"), style="official",
                                  scoring="lmms-eval"), tmp_path / "out", log=lambda *_: None)
    assert model.asked[0] == "Is there a dog in the image?"
    # popular, exact match only: 'yes' (cup, wrong: FP), 'yes.' unmatched; dog's and car's answers are sentences
    pop = results["splits"]["popular"]
    assert (pop["tp"], pop["fp"], pop["tn"], pop["fn"], pop["unmatched"]) == (0, 1, 0, 0, 3)
    assert pop["accuracy"] == 0.0 and pop["yes_ratio"] == 0.25


def test_pope_bad_input_is_named(tmp_path, scripted):
    scripted(pope_rule)
    with pytest.raises(VlprefError, match="no question files"):
        evaluate(EvalConfig(benchmark="pope", data=str(tmp_path)), tmp_path / "o", log=lambda *_: None)
    pope_data(tmp_path / "pope")
    (tmp_path / "pope" / "val2014" / "b.jpg").unlink()
    with pytest.raises(VlprefError, match=r"coco_pope_\w+\.json: question coco_pope_\w+:3: image file not found"):
        evaluate(EvalConfig(benchmark="pope", data=str(tmp_path / "pope")), tmp_path / "o", log=lambda *_: None)
    jsonl(tmp_path / "pope" / "coco_pope_random.json", [{"question_id": 1, "image": "a.jpg", "text": "Is it?"}])
    with pytest.raises(VlprefError, match=r"coco_pope_random.json, line 1: no 'label' field"):
        evaluate(EvalConfig(benchmark="pope", data=str(tmp_path / "pope")), tmp_path / "o", log=lambda *_: None)


def test_world_model_really_answers_pope(tmp_path):
    """The real path: the shipped world model loaded through the VLM layer, images read, answers journalled."""
    pope_data(tmp_path / "pope")
    config = EvalConfig(benchmark="pope", data=str(tmp_path / "pope"), max_new_tokens=6, limit=2)
    results = evaluate(config, tmp_path / "out", log=lambda *_: None)
    answers = [json.loads(line) for line in (tmp_path / "out" / "answers" / "random.jsonl").read_text().splitlines()]
    assert len(answers) == 2 and all(isinstance(a["text"], str) for a in answers)
    assert results["calls"]["answers_generated"] == 3 and results["limit"] == 2  # dog is shared by both splits
    assert evaluate(config, tmp_path / "out", log=lambda *_: None)["calls"]["answers_generated"] == 0


# -- MME ----------------------------------------------------------------------------------------------------------

def mme_data(root):
    # existence: the "images/ + questions_answers_YN/" layout; count: image and text side by side
    for stem, lines in (("e1", ["Is there a dog in the image? Please answer yes or no.\tYes",
                                "Is there a cat in the image?  Please answer yes or no.\tNo"]),
                        ("e2", ["Is there a car in the image? Please answer yes or no.\tYes",
                                "Is there a bus in the image? Please answer yes or no.\tNo"])):
        png(root / "existence" / "images" / f"{stem}.jpg")
        (root / "existence" / "questions_answers_YN").mkdir(parents=True, exist_ok=True)
        (root / "existence" / "questions_answers_YN" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    png(root / "count" / "c1.png")
    (root / "count" / "c1.txt").write_text("Are there two cups? Please answer yes or no.\tYes\n"
                                           "Are there three cups? Please answer yes or no.\tNo\n")


def mme_rule(prompt):
    obj = re.search(r"(dog|cat|car|bus|two|three)", prompt).group(1)
    # cat: a TAB and a newline inside the answer, which the results file must not carry
    return {"dog": "Yes", "cat": "no\tthere\nis none", "car": "Yes", "bus": "Yes", "two": "The answer is yes",
            "three": "No"}[obj]


def test_mme_by_hand_and_rescored(tmp_path, scripted):
    mme_data(tmp_path / "mme")
    model = scripted(mme_rule)
    results = evaluate(EvalConfig(benchmark="mme", data=str(tmp_path / "mme")), tmp_path / "out",
                       log=lambda *_: None)
    # existence: dog ok, cat ok (e1 both right); car ok, bus wrong -> acc 3/4 = 75, acc+ 1/2 = 50, score 125
    # count: 'The answer is yes' is 'other' (wrong), three ok -> acc 50, acc+ 0, score 50
    assert results["subtasks"]["existence"]["score"] == 125.0
    assert results["subtasks"]["count"]["score"] == 50.0 and results["other"] == 1
    assert results["perception"] is None  # 8 perception subtasks missing: no total, and they are listed
    assert "posters" in results["missing"]
    # both "Please answer yes or no." spacings become LLaVA's instruction
    assert "Is there a cat in the image?\nAnswer the question using a single word or phrase." in model.asked
    written = (tmp_path / "out" / "answers" / "existence.txt").read_text().splitlines()
    assert written[1] == "e1.jpg\tIs there a cat in the image?  Please answer yes or no.\tNo\tno there is none"
    assert score("mme", answers=tmp_path / "out" / "answers")["subtasks"] == results["subtasks"]
    assert (tmp_path / "out" / "categories.png").stat().st_size > 1000  # score per subtask


def test_category_breakdowns():
    from vlpref.evaluation.report import categories

    assert categories({"benchmark": "mme", "subtasks": {"existence": {"score": 125.0}, "count": {"score": 50}}}) == (
        "mme: score per subtasks", {"existence": 125.0, "count": 50.0})
    assert categories({"benchmark": "llava-bench", "all": {"relative": 80.0}, "llava_bench_conv": {"relative": 70},
                       "model": "m"}) == ("llava-bench: relative per category", {"all": 80.0, "llava_bench_conv": 70.0})
    assert categories({"benchmark": "mmhal", "per_type": {"attribute": 3.5}})[1] == {"attribute": 3.5}
    assert categories({"benchmark": "world", "chair_i": 0.1}) is None


def test_mme_malformed_question_file_is_named(tmp_path, scripted):
    scripted(mme_rule)
    mme_data(tmp_path / "mme")
    (tmp_path / "mme" / "count" / "c1.txt").write_text("Are there two cups? Please answer yes or no.\tYes\n")
    with pytest.raises(VlprefError, match=r"count/c1.txt: 1 question lines"):
        evaluate(EvalConfig(benchmark="mme", data=str(tmp_path / "mme")), tmp_path / "o", log=lambda *_: None)


# -- AMBER (discriminative) ---------------------------------------------------------------------------------------

def amber_data(root):
    annotations = [{"type": "generative", "truth": ["dog"], "hallu": ["cat"]},
                   {"type": "discriminative-hallucination", "truth": "yes"},
                   {"type": "discriminative-hallucination", "truth": "no"},
                   {"type": "discriminative-attribute-state", "truth": "no"},
                   {"type": "discriminative-relation", "truth": "yes"}]
    (root / "data" / "query").mkdir(parents=True)
    (root / "data" / "annotations.json").write_text(json.dumps(annotations))
    queries = [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
               {"id": 2, "image": "AMBER_1.jpg", "query": "Is there a dog in this image?"},
               {"id": 3, "image": "AMBER_1.jpg", "query": "Is there a cat in this image?"},
               {"id": 4, "image": "AMBER_1.jpg", "query": "Is the dog running in this image?"},
               {"id": 5, "image": "AMBER_1.jpg", "query": "Is the dog on the grass in this image?"}]
    (root / "data" / "query" / "query_all.json").write_text(json.dumps(queries))
    (root / "data" / "relation.json").write_text(json.dumps({"dog": ["puppy"], "cat": ["kitten"], "grass": []}))
    (root / "data" / "safe_words.txt").write_text("grass\n")
    png(root / "image" / "AMBER_1.jpg")


AMBER_ANSWERS = {"Describe": "A puppy and a kitten under the sky on grass.", "dog in": "Yes, there is.", "cat": "no",
                 "running": "Maybe.", "grass": "No."}


def amber_rule(prompt):
    return AMBER_ANSWERS[re.search(r"(Describe|dog in|cat|running|grass)", prompt).group(1)]


def test_amber_discriminative_by_hand(tmp_path, scripted):
    amber_data(tmp_path / "AMBER")
    model = scripted(amber_rule)
    root = tmp_path / "AMBER"
    results = evaluate(EvalConfig(benchmark="amber", data=str(root), amber_tasks=["discriminative"]),
                       tmp_path / "out", log=lambda *_: None)
    assert len(model.asked) == 4 and "generative" not in results  # the generative query is not asked
    # normalised: Yes (truth yes, right), No (truth no, right), 'Maybe.' (unparsed, wrong), No (truth yes, wrong)
    overall = results["discriminative"]["overall"]
    assert overall["n"] == 4 and overall["unparsed"] == 1
    assert overall["accuracy"] == round(2 / 4.001 * 100, 1)          # counters start at 0.001
    assert overall["precision"] == round(1 / 2.001 * 100, 1)         # pred No: 2, right: 1
    assert overall["recall"] == round(1 / 2.001 * 100, 1)            # truth no: 2, found: 1
    assert json.loads((tmp_path / "out" / "answers.json").read_text())[0] == {"id": 2, "response": "Yes"}
    rescored = score("amber", answers=tmp_path / "out" / "answers.json", metadata=root / "data" / "annotations.json")
    assert rescored == results["discriminative"]


def test_amber_generative_and_score_by_hand(tmp_path, scripted, monkeypatch):
    from vlpref.evaluation import amber

    amber_data(tmp_path / "AMBER")
    model = scripted(amber_rule)
    # stands in for NLTK's NN* tagging + lemmatizing: every word, lower-cased, without punctuation
    monkeypatch.setattr(amber, "nltk_nouns", lambda: lambda text: re.findall(r"[a-z]+", text.lower()))
    monkeypatch.setattr(amber, "spacy_similar", lambda: (None, "exact match only"))
    results = evaluate(EvalConfig(benchmark="amber", data=str(tmp_path / "AMBER")), tmp_path / "out",
                       log=lambda *_: None)
    assert model.asked[-1] == "Describe this image."  # no short-answer instruction for a description
    # kept nouns (in relation.json): puppy (covers dog), kitten (hallucinated; covers cat), grass (a safe word):
    # CHAIR 1/3.001, Cover 1/1.001, Hal 100 - 0, Cog 1/1.001 (counters start at 0.001)
    gen = results["generative"]
    assert (gen["chair"], gen["cover"], gen["hal"], gen["cog"]) == (33.3, 99.9, 100.0, 99.9)
    assert gen["similarity"] == "exact match only"
    # discriminative F1: P = R = 50.0 -> F1 = 2·.5·.5/(1.0001)·100 = 50.0; AMBER score (100 - 33.3 + 50.0) / 2
    assert results["amber_score"] == pytest.approx((100 - 33.3 + 50.0) / 2)
    raw = json.loads((tmp_path / "out" / "answers_raw.json").read_text())
    assert [r["id"] for r in raw] == [2, 3, 4, 5, 1]


def test_amber_generative_names_missing_nltk(tmp_path, scripted, monkeypatch):
    from vlpref.evaluation import amber

    amber_data(tmp_path / "AMBER")
    scripted(amber_rule)

    def missing():
        raise RuntimeError("AMBER's generative task needs NLTK: pip install nltk")

    monkeypatch.setattr(amber, "nltk_nouns", missing)
    with pytest.raises(VlprefError, match="needs NLTK: pip install nltk. The answers are journalled"):
        evaluate(EvalConfig(benchmark="amber", data=str(tmp_path / "AMBER"), amber_tasks=["generative"]),
                 tmp_path / "out", log=lambda *_: None)


# -- MMHal-Bench (judged) -----------------------------------------------------------------------------------------

TYPES = ("attribute", "adversarial", "comparison", "counting", "relation", "environment", "holistic", "other")


@pytest.fixture
def mmhal_judge():
    """A judge answering 'rating: k' where k is the digit in the model answer; 'twice' gets two ratings."""
    state = {"requests": 0}

    def generate(chats, params):
        out = []
        for chat in chats:
            state["requests"] += 1
            mark = re.search(r"ANSWER-(\d|twice)", chat.turns[-1].text).group(1)
            text = "Rating: 4 or rating: 5" if mark == "twice" else f"The answer is fine.\nRating: {mark}"
            out.append(Generation(text=text, token_ids=[1], finish_reason="stop"))
        return out

    with serve_in_thread(build_app("judge", generate, max_batch=4)) as url:
        yield RemoteEndpoint(base_url=url, model="judge", max_retries=0), state


def test_mmhal_judged_twice_calls_the_judge_once(tmp_path, scripted, mmhal_judge):
    endpoint, state = mmhal_judge
    root = tmp_path / "MMHal"
    records = [{"question_type": TYPES[i], "question_topic": "t", "image_id": f"i{i}",
                "image_src": f"https://example.com/x/img{i}.jpg", "image_content": ["Dog", "Grass"],
                "question": f"Question {i}?", "gt_answer": "A dog.", "model_answer": ""} for i in range(4)]
    (root / "images").mkdir(parents=True)
    (root / "response_template.json").write_text(json.dumps(records))
    for i in range(4):
        png(root / "images" / f"img{i}.jpg")
    replies = {"Question 0?": "ANSWER-6", "Question 1?": "ANSWER-2", "Question 2?": "ANSWER-4",
               "Question 3?": "ANSWER-twice"}
    scripted(lambda p: replies[p])
    config = EvalConfig(benchmark="mmhal", data=str(root), judge=JudgeSettings(endpoint=endpoint))
    results = evaluate(config, tmp_path / "out", log=lambda *_: None)
    # ratings 6, 2, 4 and a reply with two ratings (scored 0, counted): mean 3.0; < 3: 2 and 0 -> rate 0.5
    assert results["average"] == 3.0 and results["hallucination_rate"] == 0.5
    assert results["parse_failures"] == 1 and results["per_type"]["comparison"] == 4.0
    assert results["judge_prompt"] == "paraphrase" and state["requests"] == 4
    assert score("mmhal", answers=tmp_path / "out" / "response.json",
                 judge=tmp_path / "out" / "evaluation.json")["average"] == 3.0
    again = evaluate(config, tmp_path / "out", log=lambda *_: None)
    assert state["requests"] == 4 and again["calls"]["judge_calls"] == 0 and again["calls"]["judge_cached"] == 4
    assert again["average"] == 3.0
    # the official template, when given, is what the judge sees (a new prompt: new judge calls)
    template = tmp_path / "template.txt"
    template.write_text("Contents: {}\nQ: {}\nGT: {}\nLMM Response to Evaluate: {}\n")
    official = evaluate(config.model_copy(update={"judge": JudgeSettings(endpoint=endpoint, prompt=str(template))}),
                        tmp_path / "out", log=lambda *_: None)
    assert state["requests"] == 8 and official["judge_prompt"] == "official file template.txt"


def test_judged_benchmark_needs_a_judge():
    with pytest.raises(ValueError, match="judge: mmhal is judged by a model"):
        EvalConfig(benchmark="mmhal", data="x")
    with pytest.raises(ValueError, match="data: pope reads its official files"):
        EvalConfig(benchmark="pope")


def test_images_outside_the_data_and_images_folders_are_refused(tmp_path, scripted):
    pope_data(tmp_path / "pope")
    png(tmp_path / "secret.jpg")
    jsonl(tmp_path / "pope" / "coco_pope_random.json",
          [{"question_id": 1, "image": "../../secret.jpg", "text": "Is there a dog?", "label": "yes"}])
    scripted(pope_rule)
    with pytest.raises(VlprefError, match=r"question coco_pope_random:1: image .*secret.jpg is outside the data"):
        evaluate(EvalConfig(benchmark="pope", data=str(tmp_path / "pope")), tmp_path / "o", log=lambda *_: None)
