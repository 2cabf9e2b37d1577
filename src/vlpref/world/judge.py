"""The world's oracle judge: rates responses from the scene graph, on VLFeedback's rubric or HelpSteer's.

    >>> judge = OracleJudge()
    >>> [a] = judge.annotate(prompt, [candidate], rubric="vlfeedback")
    >>> a.aspects["Visual Faithfulness"].score, a.aspects["Visual Faithfulness"].rationale
    (4.0, 'Hallucinated: absent star. Missed: none. 9 correct facts.')

It has the judge interface every judge backend has, `annotate(prompt, candidates, rubric) -> [Annotation]`, so a
pipeline that names no judge runs offline on it. Rubrics (methods.md §1.2, §2.1):

- `vlfeedback`: Helpfulness, Ethical Considerations, Visual Faithfulness, each 1-5.
- `helpsteer`: Helpfulness, Correctness, Coherence, Complexity, Verbosity, each 0-4.

Scoring, from `claims.check_response` (every claim checked against the scene):
- Visual Faithfulness: 5 with no hallucinated fact; otherwise 1 + 4 x precision, rounded, at most 4. One wrong fact
  always costs at least a point, so a ground-truth answer outranks itself with any injected hallucination. A wrong
  answer to a question is itself unfaithful: 1 for yes/no (a "yes" to an absent object), at most 2 otherwise.
- Helpfulness: whether the question is answered. For descriptions: 1 + 4 x coverage x precision, rounded. For yes/no
  and attribute questions: 5 if right, 1 if wrong, 2 if the response does not answer.
- Ethical Considerations: 5; the world holds abstract shapes only (no people, no sensitive content).
- HelpSteer: Helpfulness and Correctness map the two above onto 0-4; Coherence drops for degenerate repetition;
  Complexity grows with the number of distinct correct facts; Verbosity compares length with the reference answer.
Rationales list the hallucinated and the missed facts. The raw judge text is the JSON of every score and fact.
"""

from __future__ import annotations

import json

from vlpref.data.schema import Annotation, AspectScore, Candidate, Prompt
from vlpref.world.claims import Facts, check_response
from vlpref.world.parse import parse_claims, words_of
from vlpref.world.scenes import NUMBER_WORDS, Scene

YES_NO_TASKS = ("pope", "relation")
DESCRIPTIVE_TASKS = ("describe", "open")


def _yes_no(text: str) -> str | None:
    words = words_of(text)
    return words[0] if words and words[0] in ("yes", "no") else None


def _faithfulness(facts: Facts) -> int:
    errors = len(facts.errors)
    if errors == 0:
        return 5
    precision = facts.correct / (facts.correct + errors)
    return max(1, min(4, round(1 + 4 * precision)))


def _answers_question(prompt: Prompt, text: str, facts: Facts) -> bool | None:
    """True/False when the response answers the prompt's question right/wrong; None when it does not answer it."""
    meta = prompt.meta
    task = meta["task"]
    if task in YES_NO_TASKS:
        said = _yes_no(text)
        return None if said is None else said == meta["label"]
    words = words_of(text)
    if task in ("color", "size", "count"):
        # What the response claims about the asked category, through the parser ("1 circle" = "one circle").
        claimed = [getattr(m, task) for m in parse_claims(text).objects if m.category == meta["category"]]
        claimed = [c for c in claimed if c is not None]
        if not claimed:
            return None
        expected = NUMBER_WORDS.index(meta["answer"]) if task == "count" else meta["answer"]
        return all(c == expected for c in claimed) and not facts.errors
    if task == "position":
        return None if not words else meta["answer"] in " ".join(words) and not facts.errors
    return None


def _helpfulness(prompt: Prompt, text: str, facts: Facts) -> int:
    if prompt.meta["task"] in DESCRIPTIVE_TASKS:
        precision = facts.correct / (facts.correct + len(facts.errors)) if facts.correct + len(facts.errors) else 0.0
        return max(1, round(1 + 4 * facts.coverage * precision))
    verdict = _answers_question(prompt, text, facts)
    return 2 if verdict is None else (5 if verdict else 1)


def _coherence(text: str) -> int:
    words = words_of(text)
    if not words:
        return 0
    repeats = sum(a == b for a, b in zip(words, words[1:], strict=False))
    sentences = [s.strip() for s in text.split(".") if s.strip()]
    duplicated = len(sentences) - len(set(sentences))
    return max(0, 4 - 2 * (repeats > 0) - min(2, duplicated))


def _verbosity(text: str, reference: str | None) -> int:
    if not reference:
        return 2
    ratio = len(words_of(text)) / max(1, len(words_of(reference)))
    return 0 if ratio < 0.3 else 1 if ratio < 0.6 else 2 if ratio <= 1.2 else 3 if ratio <= 1.8 else 4


def _rationale(facts: Facts) -> str:
    wrong = ", ".join(facts.errors) or "none"
    missed = ", ".join(sorted(facts.missed)) or "none"
    return f"Hallucinated: {wrong}. Missed: {missed}. {facts.correct} correct facts."


class OracleJudge:
    """Exact ratings from the scene graph in `prompt.meta["scene"]`."""

    judge_id = "world-oracle"

    def annotate(self, prompt: Prompt, candidates: list[Candidate], rubric: str = "vlfeedback") -> list[Annotation]:
        if rubric not in ("vlfeedback", "helpsteer"):
            raise ValueError(f"unknown rubric {rubric!r}; the oracle rates 'vlfeedback' and 'helpsteer'")
        if "scene" not in prompt.meta:
            raise ValueError(f"prompt {prompt.id}: no scene graph in meta; the oracle judges shapes-world prompts only")
        scene = Scene.from_dict(prompt.meta["scene"])
        return [self._one(prompt, scene, c, rubric) for c in candidates]

    def _one(self, prompt: Prompt, scene: Scene, candidate: Candidate, rubric: str) -> Annotation:
        facts = check_response(scene, candidate.text)
        faithful, helpful = _faithfulness(facts), _helpfulness(prompt, candidate.text, facts)
        if _answers_question(prompt, candidate.text, facts) is False:
            # A wrong answer asserts something the image does not show: "Yes" to an absent object is the
            # hallucination POPE measures; a wrong colour is an ungrounded attribute.
            faithful = min(faithful, 1 if prompt.meta["task"] in YES_NO_TASKS else 2)
            facts.wrong_answers.append(f"wrong answer (expected {prompt.meta.get('label', prompt.meta.get('answer'))})")
        why = _rationale(facts)
        if rubric == "vlfeedback":
            aspects = {
                "Helpfulness": AspectScore(score=helpful, rationale=why),
                "Ethical Considerations": AspectScore(
                    score=5, rationale="Abstract shapes only: no people, private or sensitive content."),
                "Visual Faithfulness": AspectScore(score=faithful, rationale=why),
            }
        else:
            distinct = len(set(facts.covered)) + facts.attributes + facts.positions + facts.counts
            aspects = {
                "Helpfulness": AspectScore(score=helpful - 1, rationale=why),
                "Correctness": AspectScore(score=faithful - 1, rationale=why),
                "Coherence": AspectScore(score=_coherence(candidate.text), rationale="Repetition and sentence "
                                         "structure of the response."),
                "Complexity": AspectScore(score=min(4, distinct // 3), rationale=f"{distinct} distinct facts."),
                "Verbosity": AspectScore(score=_verbosity(candidate.text, prompt.reference),
                                         rationale="Length compared with the reference answer."),
            }
        raw = {"aspects": {k: v.score for k, v in aspects.items()}, "errors": facts.errors,
               "missed": sorted(facts.missed), "correct": facts.correct}
        return Annotation(candidate_id=candidate.id, prompt_id=prompt.id, judge_id=self.judge_id, rubric=rubric,
                          aspects=aspects, raw=json.dumps(raw), parse_status="ok")
