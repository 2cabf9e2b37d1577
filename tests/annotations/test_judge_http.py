"""The chat judge over real HTTP against a scripted OpenAI-compatible server (vlpref's own app): rubric prompt in,
ratings out, parse failures retried and counted, endpoint failures journalled and retried by the next run."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from vlpref.annotations.judge import JudgeConfig, judge
from vlpref.data.schema import Candidate, Prompt, Turn
from vlpref.data.store import read_meta, write_records
from vlpref.errors import VlprefError
from vlpref.models.remote import RemoteEndpoint
from vlpref.models.vlm import Generation
from vlpref.serve import build_app
from vlpref.serve import serve_in_thread as running


def scripted(state: dict):
    """A judge that rates each text 5 if it mentions a circle, else 2; answers garbage to a 'garbage' prompt's first
    attempt (seed 0) and fails (HTTP 500) on an 'explode' prompt while state['explode'] is set."""

    def generate(chats, params):
        out = []
        for chat, p in zip(chats, params, strict=True):
            text = chat.turns[-1].text
            state["requests"].append(text)
            state["seeds"].append((text, p.seed))
            if "explode" in text and state["explode"]:
                raise RuntimeError("judge crashed")
            if "garbage" in text and p.seed == 0:
                answer = "I would rather not."
            else:
                texts = re.findall(r"^- <text (\d+)> (.*)$", text.split("## Annotation")[1], re.MULTILINE)
                blocks = []
                for aspect in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness"):
                    blocks.append(f"#### {aspect} Assessment")
                    for k, t in texts:
                        blocks.append(f"##### Output for Text {k}\nRating: {5 if 'circle' in t else 2}\n"
                                      f"Rationale: about {t}")
                answer = "\n".join(blocks)
            out.append(Generation(text=answer, token_ids=[1] * 10, finish_reason="stop", prompt_tokens=100))
        return out

    return generate


@pytest.fixture
def endpoint(tmp_path):
    state = {"requests": [], "seeds": [], "explode": True}
    with running(build_app("judge", scripted(state), max_batch=4)) as url:
        yield RemoteEndpoint(base_url=url, model="judge", api_key_env="VLPREF_TEST_KEY", max_retries=0,
                             price_per_million=(2.5, 10.0)), state


def data(tmp_path):
    prompts_dir, cands_dir = tmp_path / "prompts", tmp_path / "cands"
    (prompts_dir / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 0, 0)).save(prompts_dir / "images" / "a.png")
    questions = {"p1": "What is it?", "p2": "garbage question", "p3": "explode"}
    prompts = [Prompt(id=k, images=["images/a.png"], turns=[Turn(role="user", text=f"<image>\n{q}")])
               for k, q in questions.items()]
    write_records(prompts_dir, "prompts", prompts)
    cands = [Candidate(id=f"{p.id}/m/{i}", prompt_id=p.id, model_id="m", text=t)
             for p in prompts for i, t in enumerate(["A red circle.", "A dog."])]
    write_records(cands_dir, "candidates", cands, prompts=str(prompts_dir))
    return cands_dir


def test_chat_judge_end_to_end(endpoint, tmp_path, monkeypatch):
    remote, state = endpoint
    monkeypatch.setenv("VLPREF_TEST_KEY", "sk-secret-123")
    cands = data(tmp_path)
    config = JudgeConfig(backend="openai", endpoint=remote)
    logs = []
    with pytest.raises(VlprefError, match="1 judge call"):
        judge(config, cands, tmp_path / "judged", log=logs.append)
    # The garbage answer was asked again (new seed) and parsed; the crash is journalled, not written.
    # (the server reruns a failed batch one request at a time, so a request can reach the model twice)
    assert {seed for text, seed in state["seeds"] if "garbage" in text} == {0, 1}
    assert (tmp_path / "judged" / "failed.jsonl").read_text().count("p3") == 1
    # The endpoint refused response_format, so the judge fell back to the rubric's text format.
    assert "Rating: [Rating]" in state["requests"][-1]
    state["explode"], state["requests"] = False, []
    annotations = judge(config, cands, tmp_path / "judged", log=logs.append)
    assert state["requests"] and all("explode" in r for r in state["requests"])  # only the failed prompt again
    by = {a.candidate_id: a for a in annotations}
    assert len(by) == 6 and all(a.parse_status == "ok" for a in annotations)
    assert by["p1/m/0"].aspects["Visual Faithfulness"].score == 5 and by["p1/m/1"].mean_score() == 2
    assert "Output for Text 1" in by["p1/m/0"].raw and by["p1/m/0"].judge_id.startswith("judge@")
    meta = read_meta(tmp_path / "judged")
    assert meta["usage"]["prompt_tokens"] == 100 and meta["usage"]["cost_usd"] == pytest.approx(100 * 2.5e-6 +
                                                                                                10 * 1e-5)
    # No secret anywhere in what the judge wrote.
    for path in (tmp_path / "judged").iterdir():
        assert b"sk-secret-123" not in path.read_bytes()
    assert not any("sk-secret-123" in line for line in logs)


def test_retries_resume_after_a_kill(tmp_path, monkeypatch):
    """Killed during a parse retry, the rerun reuses the unparsed first attempt instead of asking for it again."""
    from vlpref.annotations import judge as judge_module
    from vlpref.models.remote import Completion

    cands = data(tmp_path)
    sent = []
    good = "\n".join(f"#### {a} Assessment\n##### Output for Text 1\nRating: 3\nRationale: r\n"
                     f"##### Output for Text 2\nRating: 2\nRationale: r" for a in
                     ("Helpfulness", "Ethical Considerations", "Visual Faithfulness"))

    def fake(endpoint):
        def complete(messages, params, extras, on_done=None):
            results = []
            for j, (make, p) in enumerate(zip(messages, params, strict=True)):
                text = make()[-1]["content"][-1]["text"]
                sent.append((text.count("garbage") > 0, p.seed))
                if p.seed == 1 and state["kill"]:
                    raise KeyboardInterrupt  # the kill, in the middle of the retry round
                results.append(Completion("no idea" if p.seed == 0 else good, "stop"))
                if on_done:
                    on_done(j, results[-1])
            return results
        return complete

    state = {"kill": True}
    monkeypatch.setattr(judge_module, "endpoint_complete", fake)
    config = JudgeConfig(backend="openai", endpoint=RemoteEndpoint(base_url="http://unused/v1", model="j"))
    with pytest.raises(KeyboardInterrupt):
        judge(config, cands, tmp_path / "judged")
    assert [seed for _, seed in sent].count(0) == 3  # every prompt's first attempt was made (and did not parse)
    state["kill"], sent[:] = False, []
    annotations = judge(config, cands, tmp_path / "judged")
    assert [seed for _, seed in sent] == [1, 1, 1]  # only the retries: the first attempts came from the journal
    assert all(a.parse_status == "ok" for a in annotations) and len(annotations) == 6
