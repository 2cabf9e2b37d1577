"""Each paper's rule for turning candidates (and their ratings) into preference pairs. Pure functions, no I/O.

    >>> pairs, skipped = vlfeedback_pairs(prompt, candidates, annotations)

Every function returns the pairs it built and the reasons for what it did not build (`Skip`), so nothing is
dropped silently: `vlpref pairs` writes the skips next to the pairs and counts them in its report.

The rules (methods.md):
- `vlfeedback_pairs` (§1.1 step 5): every pair of a prompt's rated responses, ranked by the unweighted mean of the
  aspect ratings; equal means are dropped (optionally also differences below `margin`); a response whose ratings did
  not parse takes part in no pair.
- `helpsteer_pairs` (§2.1 step 4): S = Helpfulness + Correctness + Coherence; skip the prompt if max S - min S < 2;
  chosen = the first response with the highest S, rejected = uniformly random among responses with S <= S_max - 2.
  `best_response` (rejection sampling, step 5) and `steerlm_record` (step 6) use the same ratings.
- `seva_pair` (§3.1 step 4): chosen = the answer on the original image, rejected = the answer on the augmented image,
  dropped when the two strings are identical (after stripping whitespace).
- `povid_pair` (§4.1 step 2): chosen = the ground-truth answer, rejected = its hallucination-injected rewrite.
- `image_contrast_pair` (mDPO §5.3): the same response as chosen and rejected; the rejected side is scored under
  the corrupted images (`rejected_images`).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from vlpref.data.schema import Annotation, Candidate, PreferencePair, Prompt, Turn
from vlpref.data.steerlm import HELPSTEER_ATTRIBUTES, steered

HELPSTEER_RANK = ("Helpfulness", "Correctness", "Coherence")


@dataclass(frozen=True)
class Skip:
    """Why a prompt (or one response of it) produced no pair."""

    prompt_id: str
    reason: str
    candidate_id: str | None = None


def _pair(prompt: Prompt, chosen: str, rejected: str, strategy: str, suffix: str, **fields) -> PreferencePair:
    return PreferencePair(id=f"{prompt.id}/{suffix}", prompt_id=prompt.id, images=prompt.images, turns=prompt.query,
                          chosen=chosen, rejected=rejected, strategy=strategy, **fields)


def _scores(annotation: Annotation) -> dict[str, float]:
    return {name: a.score for name, a in annotation.aspects.items() if a.score is not None}


def _by_candidate(prompt: Prompt, candidates: list[Candidate], annotations: list[Annotation],
                  needed: tuple[str, ...] | None) -> tuple[list[tuple[Candidate, Annotation]], list[Skip]]:
    """Candidates paired with their annotation; those without a usable one become skips."""
    by_id = {a.candidate_id: a for a in annotations}
    rated, skipped = [], []
    for c in candidates:
        a = by_id.get(c.id)
        if a is None:
            skipped.append(Skip(prompt.id, "no annotation", c.id))
        elif (a.mean_score() is None) if needed is None else any(k not in _scores(a) for k in needed):
            skipped.append(Skip(prompt.id, f"ratings did not parse ({a.parse_status}: {a.error or 'missing'})", c.id))
        else:
            rated.append((c, a))
    return rated, skipped


def vlfeedback_pairs(prompt: Prompt, candidates: list[Candidate], annotations: list[Annotation],
                     margin: float = 0.0) -> tuple[list[PreferencePair], list[Skip]]:
    """All pairs ranked by mean rating; ties (and differences below `margin`) dropped."""
    rated, skipped = _by_candidate(prompt, candidates, annotations, needed=None)
    pairs = []
    if len(rated) < 2:  # said, so that a pool sampling one answer per prompt is not a silent empty result
        skipped.append(Skip(prompt.id, f"fewer than two rated responses ({len(rated)})"))
    for (c1, a1), (c2, a2) in itertools.combinations(rated, 2):
        s1, s2 = a1.mean_score(), a2.mean_score()
        if s1 == s2 or abs(s1 - s2) < margin:
            skipped.append(Skip(prompt.id, f"tie or below margin ({s1:g} vs {s2:g})", f"{c1.id}|{c2.id}"))
            continue
        (cw, aw), (cl, al) = ((c1, a1), (c2, a2)) if s1 > s2 else ((c2, a2), (c1, a1))
        pairs.append(_pair(prompt, cw.text, cl.text, "vlfeedback-mean", f"{len(pairs)}",
                           chosen_scores=_scores(aw), rejected_scores=_scores(al),
                           provenance={"chosen": cw.id, "rejected": cl.id, "chosen_model": cw.model_id,
                                       "rejected_model": cl.model_id, "judge": aw.judge_id, "margin": margin}))
    return pairs, skipped


def helpsteer_score(annotation: Annotation) -> float:
    """S = Helpfulness + Correctness + Coherence (0-12); Complexity and Verbosity are not used for ranking."""
    scores = _scores(annotation)
    return sum(scores[k] for k in HELPSTEER_RANK)


def helpsteer_pairs(prompt: Prompt, candidates: list[Candidate], annotations: list[Annotation],
                    rng: random.Random) -> tuple[list[PreferencePair], list[Skip]]:
    """One pair per prompt: the best response against a random one at least 2 points of S below it."""
    rated, skipped = _by_candidate(prompt, candidates, annotations, needed=HELPSTEER_RANK)
    if len(rated) < 2:
        return [], [*skipped, Skip(prompt.id, f"{len(rated)} rated response(s); a pair needs 2")]
    scored = [(helpsteer_score(a), c, a) for c, a in rated]
    best = max(s for s, _, _ in scored)
    worst = min(s for s, _, _ in scored)
    if best - worst < 2:
        return [], [*skipped, Skip(prompt.id, f"S range {best - worst:g} < 2")]
    s_w, c_w, a_w = next(x for x in scored if x[0] == best)  # the first on ties, as the paper's argmax
    s_l, c_l, a_l = rng.choice([x for x in scored if x[0] <= best - 2])
    pair = _pair(prompt, c_w.text, c_l.text, "helpsteer", "0", chosen_scores={**_scores(a_w), "S": s_w},
                 rejected_scores={**_scores(a_l), "S": s_l},
                 provenance={"chosen": c_w.id, "rejected": c_l.id, "judge": a_w.judge_id})
    return [pair], skipped


def best_response(prompt: Prompt, candidates: list[Candidate], annotations: list[Annotation]) -> Prompt | None:
    """Rejection sampling's SFT record: the prompt answered by its highest-S response (first on ties)."""
    rated, _ = _by_candidate(prompt, candidates, annotations, needed=HELPSTEER_RANK)
    if not rated:
        return None
    c, a = max(rated, key=lambda ca: helpsteer_score(ca[1]))  # max keeps the first of equals
    return prompt.model_copy(update={
        "id": f"{prompt.id}/best", "turns": [*prompt.query, Turn(role="assistant", text=c.text)],
        "meta": {**prompt.meta, "candidate": c.id, "scores": _scores(a), "S": helpsteer_score(a)}})


def steerlm_record(prompt: Prompt, candidate: Candidate, annotation: Annotation) -> Prompt | None:
    """SteerLM's SFT record: the question conditioned on this response's attribute values, answered by it."""
    scores = _scores(annotation)
    if any(k not in scores for k in HELPSTEER_ATTRIBUTES):
        return None
    turns = steered(prompt.query, scores)
    return prompt.model_copy(update={
        "id": f"{prompt.id}/steer/{candidate.model_id}-{candidate.index}",
        "turns": [*turns, Turn(role="assistant", text=candidate.text)],
        "meta": {**prompt.meta, "candidate": candidate.id, "scores": scores}})


def degenerate(text: str) -> bool:
    """A response that is not fluent text: no word at all, or one word said three or more times in a row ("the the
    the"), what a small model produces under heavy image noise. SeVa's negatives are meant to be fluent but wrong;
    `vlpref pairs --strategy seva` reports the share of degenerate rejected answers."""
    words = re.findall(r"[a-z]+", text.lower())
    return not words or any(a == b == c for a, b, c in zip(words, words[1:], words[2:], strict=False))


def seva_pair(prompt: Prompt, original: Candidate, augmented: Candidate) -> PreferencePair | Skip:
    """Chosen: the answer on the original image; rejected: the answer on the augmented one (scored on the original
    image in training, as SeVa does). Identical answers make no pair."""
    if original.text.strip() == augmented.text.strip():
        return Skip(prompt.id, "identical answers on the original and the augmented image", augmented.id)
    return _pair(prompt, original.text, augmented.text, "seva", f"{original.model_id}/{original.index}",
                 provenance={"chosen": original.id, "rejected": augmented.id,
                             "augmented_images": augmented.images, "model": original.model_id})


def povid_pair(prompt: Prompt, injected: str, kind: str, detail: str = "") -> PreferencePair | Skip:
    """Chosen: the ground truth; rejected: the same answer with an injected hallucination."""
    if prompt.reference is None:
        return Skip(prompt.id, "no ground-truth answer (the prompt does not end with an assistant turn)")
    if injected.strip() == prompt.reference.strip():
        return Skip(prompt.id, f"the {kind} injection left the answer unchanged")
    return _pair(prompt, prompt.reference, injected, "povid", kind,
                 provenance={"injection": kind, "detail": detail})


def image_contrast_pair(prompt: Prompt, response: str, corrupted: list[str], op: str) -> PreferencePair:
    """The same response twice; the rejected side is conditioned on the corrupted images."""
    return _pair(prompt, response, response, "image-contrast", op, rejected_images=corrupted,
                 provenance={"corruption": op})
