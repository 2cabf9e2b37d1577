"""Property-based tests (hypothesis, 1,000 generated cases each, derandomised so CI sees the same cases): importers,
config loading, judge-output parsing and benchmark answer parsing never crash without a clear message naming the
input, and never drop a record silently."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.reliability.harness import FIGURES, LONG
from vlpref.annotations.judge import JudgeConfig
from vlpref.annotations.rubric import load_rubric, parse_json_ratings, parse_ratings
from vlpref.candidates.sample import SampleConfig
from vlpref.config import parse
from vlpref.data.importers import import_llava
from vlpref.data.rejects import RejectLog
from vlpref.errors import ConfigError, RecordError
from vlpref.evaluation.amber import normalise
from vlpref.evaluation.run import EvalConfig
from vlpref.evaluation.scoring.llava_bench import parse_score
from vlpref.evaluation.scoring.mme import mme_answer
from vlpref.evaluation.scoring.mmhal import mmhal_rating
from vlpref.evaluation.scoring.mmvet import mmvet_parse_grade
from vlpref.evaluation.scoring.mtbench import judge_rating
from vlpref.evaluation.scoring.pope import pope_answer, pope_metrics_lmms_eval
from vlpref.training.config import TrainConfig

CASES = settings(max_examples=10_000 if LONG else 1000, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


# -- importers ----------------------------------------------------------------------------------------------------

images = st.sampled_from(["a.png", "missing.png", "../outside.png", "/etc/passwd", "", "sub/../a.png", "a.png\x00"])
messages = st.fixed_dictionaries({
    "from": st.sampled_from(["human", "gpt", "system", "bot", None, 3]),
    "value": st.lists(st.sampled_from(["<image>", "Describe ", "it.", "\n", "☃"]), max_size=4).map("".join)
    | st.integers()})
llava_records = st.fixed_dictionaries({}, optional={
    "id": st.text(string.ascii_letters, min_size=1, max_size=4) | st.integers(0, 3) | st.none(),
    "image": images | st.lists(images, max_size=3) | st.integers(),
    "conversations": st.lists(messages, max_size=3) | json_scalars})
rows = st.lists(llava_records | json_values, min_size=1, max_size=4)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "a.png")
    return root


@CASES
@given(records=rows, jsonl=st.booleans(), garbage=st.sampled_from(["", "{oops", "[1,", "null"]))
def test_llava_import_names_every_bad_record_and_drops_none(records, jsonl, garbage, image_root, tmp_path_factory):
    FIGURES["property_cases_importer"] += 1
    work = tmp_path_factory.mktemp("case")
    if jsonl:  # one record per line, plus (maybe) a line that is not JSON at all: a record of its own
        path = work / "data.jsonl"
        lines = [json.dumps(r) for r in records] + ([garbage] if garbage else [])
        path.write_text("\n".join(lines) + "\n")
        records = lines
    else:
        path = work / "data.json"
        path.write_text(json.dumps(records))
    try:
        prompts = import_llava(path, image_root, work / "out")
    except RecordError as error:  # the default mode stops at the first bad record, naming file and record
        assert str(error).startswith(str(path))
    else:
        assert len(prompts) == len(records)
    rejects = RejectLog(work / "rejects.jsonl", on_error="skip")
    kept = import_llava(path, image_root, work / "skip", rejects)
    assert len(kept) + rejects.count == len(records), "a record was neither imported nor rejected"
    if rejects.count:
        logged = [json.loads(line) for line in (work / "rejects.jsonl").read_text().split("\n") if line]
        assert len(logged) == rejects.count and all(r["reason"] and r["file"] for r in logged)


# -- config loading -----------------------------------------------------------------------------------------------

SCHEMAS = [TrainConfig, EvalConfig, SampleConfig, JudgeConfig]
known = st.sampled_from(sorted({f for s in SCHEMAS for f in s.model_fields}))
typos = known.map(lambda k: k[:-1] + "x" if len(k) > 2 else k + "_")
configs = st.dictionaries(known | typos | st.text(max_size=6), json_values, max_size=6)


@CASES
@given(schema=st.sampled_from(SCHEMAS), data=configs | json_values)
def test_config_loading_fails_only_with_a_message_naming_the_key(schema, data):
    FIGURES["property_cases_config"] += 1
    try:
        parse(schema, data, source="recipe.yaml")
    except ConfigError as error:
        lines = str(error).splitlines()
        assert lines and all(line.startswith("recipe.yaml: ") for line in lines)
        unknown = [k for k in data if k not in schema.model_fields] if isinstance(data, dict) else []
        for key in unknown:  # every unknown key is named (escaped if unprintable): the message is one line each
            shown = key if key.isprintable() else key.encode("unicode_escape").decode()
            assert f"'{shown}'" in str(error)
    else:  # accepted: then it held no unknown key
        assert isinstance(data, dict) and all(k in schema.model_fields for k in data)


# -- judge-output parsing -----------------------------------------------------------------------------------------

fragments = st.sampled_from(["#### Helpfulness Assessment", "##### Output for Text 1", "##### Output for Text 2",
                             "Rating: 4", "Rating: 9", "Rating: -1", "Rating: 3.5", "Rationale: ok", "**Rating:** 2/5",
                             "Helpfulness: 3", "Correctness: 4, Coherence: 2", "#### Visual Faithfulness", "\n",
                             "Text 1:", "N/A", "rating: 5", "[[7]]", "[3]", "8 6", '{"responses": [', "```json"])
judge_texts = st.lists(fragments | st.text(max_size=30), max_size=25).map("\n".join) | st.text()


@CASES
@given(rubric=st.sampled_from(["vlfeedback", "helpsteer"]), text=judge_texts, n=st.integers(1, 4))
def test_rubric_parsing_never_crashes_and_keeps_the_scale(rubric, text, n):
    FIGURES["property_cases_judge_parsing"] += 1
    spec = load_rubric(rubric)
    for parser in (parse_ratings, parse_json_ratings):
        scores, status = parser(spec, text, n)
        assert len(scores) == n and status in ("ok", "partial", "failed")
        for per_response in scores:
            assert set(per_response) == set(spec.aspects)
            for aspect in per_response.values():
                assert aspect.score is None or spec.scale[0] <= aspect.score <= spec.scale[1]


@CASES
@given(text=judge_texts)
def test_benchmark_judge_parsers_never_crash(text):
    FIGURES["property_cases_judge_parsing"] += 1
    assert mmhal_rating(text) in (None, 0, 1, 2, 3, 4, 5, 6)
    rating = judge_rating(text)
    assert rating == -1 or rating >= 0
    grade = mmvet_parse_grade(text)
    assert grade is None or 0.0 <= grade <= 1.0
    assert len(parse_score(text)) == 2


# -- benchmark answer parsing -------------------------------------------------------------------------------------

answers = st.lists(st.sampled_from(["Yes", "yes", "No", "no", "NO", "not", ".", ",", " ", "there", "is", "a", "\n",
                                    "Nope", "y", "n"]) | st.text(max_size=6), max_size=8).map("".join) | st.text()


@CASES
@given(texts=st.lists(answers, min_size=1, max_size=6), labels=st.lists(st.sampled_from(["yes", "no"]), min_size=6,
                                                                         max_size=6))
def test_answer_parsers_always_give_a_verdict(texts, labels):
    FIGURES["property_cases_answer_parsing"] += 1
    assert all(pope_answer(t) in ("yes", "no") for t in texts)
    assert all(mme_answer(t.lower()) in ("yes", "no", "other") for t in texts)
    assert all(normalise(t) in ("Yes", "No", t) for t in texts)
    metrics = pope_metrics_lmms_eval(texts, labels[: len(texts)])
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] + metrics["unmatched"] == len(texts)
    assert 0.0 <= metrics["f1"] <= 1.0
