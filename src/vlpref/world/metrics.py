"""The world benchmarks' numbers from answers already given: CHAIR, hallucination types and coverage over
descriptions, world-POPE per split, and the oracle judge's ratings. No model call here: `vlpref.evaluation.world`
gets the answers (journalled, like every benchmark's) and hands their texts to `world_metrics`.

    >>> results, items = world_metrics(describe, texts, pope, answers, oracle=True)
    >>> results["chair_i"], results["pope_f1_adversarial"], items[describe[0].id]["hallucinated"]

Results, in this order: `chair_s`, `chair_i`, `recall`, `mentions`, `captions` (CHAIR, `vlpref.evaluation.scoring.chair`
on the categories each description mentions, duplicates counted); `chair_i_present` and `chair_i_absent` (CHAIR_i's
hallucinated mentions whose evidence is present in the pixels / absent from them, over all mentions: they add up to
CHAIR_i; `vlpref.world.claims.evidence_absent`); `attribute_hallucination`, `count_hallucination`,
`position_hallucination`, `relation_hallucination` (wrong claims of that kind / claims of that kind, 0 with none);
`coverage` (the mean share of each scene's categories mentioned); with `oracle`, `helpfulness` and `faithfulness`
(the oracle judge's mean Helpfulness and Visual Faithfulness, VLFeedback's 1-5, over the descriptions) and, when
short questions were asked, `qa_helpfulness` (its mean Helpfulness over the answers to the attribute, count and
position questions: 5 right, 1 wrong, 2 not answered); then per split `pope_f1_<split>`, `pope_accuracy_<split>` and
`pope_yes_ratio_<split>`. What counts as a wrong claim is in
`vlpref.world.claims`.
"""

from __future__ import annotations

from vlpref.data.schema import Candidate, Prompt
from vlpref.evaluation.scoring.chair import chair
from vlpref.evaluation.scoring.pope import pope_answer, pope_metrics
from vlpref.world.claims import Facts, check_response, partner_mentions
from vlpref.world.judge import OracleJudge
from vlpref.world.scenes import Scene
from vlpref.world.tasks import POPE_SPLITS

ORACLE_KEYS = ("helpfulness", "faithfulness", "qa_helpfulness")  # the results `oracle` adds


def _rate(wrong: int, total: int) -> float:
    return wrong / total if total else 0.0


def _description_metrics(scenes: list[Scene], all_facts: list[Facts]) -> dict[str, float]:
    out = chair([f.mentions for f in all_facts], [s.categories for s in scenes])
    # CHAIR_i split by evidence (vlpref.world.claims): the two shares add up to CHAIR_i.
    mentions, unresolvable = out["mentions"], sum(len(f.unresolvable) for f in all_facts)
    hallucinated = sum(len(f.hallucinated_objects) for f in all_facts)
    out["chair_i_present"] = _rate(hallucinated - unresolvable, mentions)
    out["chair_i_absent"] = _rate(unresolvable, mentions)
    total = lambda name: sum(getattr(f, name) for f in all_facts)  # noqa: E731
    wrong = lambda name: sum(len(getattr(f, name)) for f in all_facts)  # noqa: E731
    out.update({
        "attribute_hallucination": _rate(wrong("wrong_attributes"), total("attributes")),
        "count_hallucination": _rate(wrong("wrong_counts"), total("counts")),
        "position_hallucination": _rate(wrong("wrong_positions"), total("positions")),
        "relation_hallucination": _rate(wrong("wrong_relations"), total("relations")),
        "coverage": sum(f.coverage for f in all_facts) / len(all_facts) if all_facts else 0.0,
    })
    return out


def description_metrics(scenes: list[Scene], texts: list[str]) -> dict[str, float]:
    """CHAIR, attribute / count / position / relation hallucination rates and coverage over descriptions."""
    return _description_metrics(scenes, [check_response(s, t) for s, t in zip(scenes, texts, strict=True)])


def partner_contrast(pairs: list[tuple[Scene, str, str]], partner_of: dict[str, str]) -> dict[str, int]:
    """What (scene, chosen, rejected) description pairs teach about the base model's error, naming the absent
    co-occurrence partner of a present shape: how many pairs name one in the rejected answer only (against the
    error), in the chosen answer only (toward it), of `description_pairs`.

        >>> scene = Scene(id="s", objects=(SceneObject("circle", "red", "large", 0, 0),))
        >>> partner_contrast([(scene, "There is a circle.", "There is a circle. There is a square.")],
        ...                  WorldConfig().partner_of)
        {'description_pairs': 1, 'partner_rejected_only': 1, 'partner_chosen_only': 0}
    """
    counts = {"description_pairs": len(pairs), "partner_rejected_only": 0, "partner_chosen_only": 0}
    for scene, chosen, rejected in pairs:
        names = [bool(partner_mentions(scene, check_response(scene, text), partner_of)) for text in (chosen, rejected)]
        counts["partner_rejected_only"] += names[1] and not names[0]
        counts["partner_chosen_only"] += names[0] and not names[1]
    return counts


def oracle_ratings(prompts: list[Prompt], texts: list[str]) -> list[dict[str, float]]:
    """The oracle judge's Helpfulness and Visual Faithfulness (VLFeedback's 1-5) of each answer to its prompt."""
    judge = OracleJudge()
    rated = [judge.annotate(p, [Candidate(id=f"{p.id}/eval", prompt_id=p.id, model_id="eval", text=t)])[0]
             for p, t in zip(prompts, texts, strict=True)]
    return [{"helpfulness": a.aspects["Helpfulness"].score, "faithfulness": a.aspects["Visual Faithfulness"].score}
            for a in rated]


def pope_verdict(text: str) -> str:
    """'yes' or 'no': the official POPE parser on the answer with its first letter capitalised, since the world's
    models answer in lower case and the parser reads 'No' and 'no' but not 'NO'."""
    return pope_answer(text.capitalize())


def world_metrics(describe: list[Prompt], texts: list[str], pope: list[Prompt], answers: list[str],
                  oracle: bool = False, questions: list[Prompt] = (), replies: list[str] = ()
                  ) -> tuple[dict[str, float], dict[str, dict]]:
    """(results, items): the world benchmarks' numbers (see the module docstring) from the answers `texts` to the
    description prompts, `answers` to the yes/no prompts and `replies` to the short `questions` (rated only with
    `oracle`); and, per prompt id, what the per-item view shows (the hallucinated facts, coverage and ratings of a
    description; the verdict of a yes/no answer; a short answer's rating)."""
    if len(questions) != len(replies):
        raise ValueError(f"{len(questions)} short questions but {len(replies)} replies")
    scenes = [Scene.from_dict(p.meta["scene"]) for p in describe]
    all_facts = [check_response(s, t) for s, t in zip(scenes, texts, strict=True)]
    results = _description_metrics(scenes, all_facts)
    items = {p.id: {"task": "describe", "hallucinated": ", ".join(f.errors) or "none",
                    "unresolvable": ", ".join(f.unresolvable) or "none",
                    "missed": ", ".join(sorted(f.missed)) or "none", "coverage": f.coverage}
             for p, f in zip(describe, all_facts, strict=True)}
    if oracle:
        ratings = oracle_ratings(describe, texts)
        for key in ("helpfulness", "faithfulness"):
            results[key] = sum(r[key] for r in ratings) / len(ratings) if ratings else 0.0
        for p, r in zip(describe, ratings, strict=True):
            items[p.id].update(r)
        if questions:  # a short answer's Helpfulness is whether it answers right (vlpref.world.judge)
            rated = oracle_ratings(questions, replies)
            results["qa_helpfulness"] = sum(r["helpfulness"] for r in rated) / len(rated)
            for p, r in zip(questions, rated, strict=True):
                items[p.id] = {"task": p.meta["task"], "reference": p.reference, "helpfulness": r["helpfulness"]}
    verdicts = [pope_verdict(a) for a in answers]
    for split in POPE_SPLITS:
        rows = [(v, p.meta["label"]) for p, v in zip(pope, verdicts, strict=True) if p.meta["split"] == split]
        scores = pope_metrics([r[0] for r in rows], [r[1] for r in rows])
        for key in ("f1", "accuracy", "yes_ratio"):
            results[f"pope_{key}_{split}"] = scores[key]
    for p, v in zip(pope, verdicts, strict=True):
        items[p.id] = {"task": "pope", "split": p.meta["split"], "reference": p.meta["label"], "parsed": v,
                       "correct": v == p.meta["label"]}
    return results, items
