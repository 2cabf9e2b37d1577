"""SteerLM's attribute conditioning (Li–Lin–Pei, methods.md §2.1 step 6): the question asks for attribute values.

    >>> from vlpref.data.steerlm import steered, TOP
    >>> turns = steered(prompt.query, TOP)    # '... Likert scale:\\nHelpfulness:4,Correctness:4,...' appended

In training each response is conditioned on its own ratings (`pairs.strategies.steerlm_record`); at inference the
model is asked for the values wanted — Li–Lin–Pei ask for 4 on all five (`TOP`), through `vlpref sample` (a pool
member's `steer`) or `vlpref world eval --steer`.
"""

from __future__ import annotations

import statistics

from vlpref.data.schema import Turn

HELPSTEER_ATTRIBUTES = ("Helpfulness", "Correctness", "Coherence", "Complexity", "Verbosity")
# Li-Lin-Pei's conditioning string (methods.md §2.1 step 6), with each response's own values in training.
STEERLM_SUFFIX = "Please answer the question such that your response is in the following attributes in 5-point " \
                 "Likert scale:\n"
TOP = dict.fromkeys(HELPSTEER_ATTRIBUTES, 4)


def steerlm_suffix(scores: dict[str, float]) -> str:
    """'...Likert scale:\\nHelpfulness:4,Correctness:4,...' with the given attribute values (integers)."""
    return STEERLM_SUFFIX + ",".join(f"{k}:{round(scores[k])}" for k in HELPSTEER_ATTRIBUTES)


def check_targets(targets: dict[str, float]) -> None:
    """ValueError naming the HelpSteer attributes `targets` lacks (steering needs all five)."""
    missing = [k for k in HELPSTEER_ATTRIBUTES if k not in targets]
    if missing:
        raise ValueError(f"steering needs a value for every HelpSteer attribute; missing {', '.join(missing)}")


def steered(turns: list[Turn], targets: dict[str, float]) -> list[Turn]:
    """`turns` with the last user turn asking for the `targets` attribute values: SteerLM's conditioning, in training
    (each response's own values) and at inference (the values wanted, Li–Lin–Pei: all 4)."""
    check_targets(targets)
    turns = list(turns)
    turns[-1] = Turn(role="user", text=f"{turns[-1].text}\n{steerlm_suffix(targets)}")
    return turns


def in_range_targets(records: list) -> dict[str, dict[str, float]]:
    """Per task type (`meta["task"]`), values to ask a SteerLM model for that its own training data holds: for each
    attribute, the median over that task's best responses (those with the task's highest Helpfulness).

    Li–Lin–Pei ask for 4 on every attribute; on a yes/no question that means Complexity 4 and Verbosity 4, values no
    training answer of that kind carries. `records`: SteerLM training records (`pairs.strategies.steerlm_record`,
    whose meta holds the response's `scores` and its prompt's `task`).
    """
    by_task: dict[str, list[dict[str, float]]] = {}
    for record in records:
        by_task.setdefault(record.meta.get("task", "*"), []).append(record.meta["scores"])
    targets = {}
    for task, scores in by_task.items():
        top = max(s["Helpfulness"] for s in scores)
        best = [s for s in scores if s["Helpfulness"] == top]
        targets[task] = {k: float(statistics.median_low(s[k] for s in best)) for k in HELPSTEER_ATTRIBUTES}
    return targets


def parse_targets(text: str) -> dict[str, float]:
    """'Helpfulness:4,Correctness:4,...' (the suffix's own form) -> values; ValueError naming what is wrong."""
    targets = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = (x.strip() for x in part.partition(":"))
        if name not in HELPSTEER_ATTRIBUTES:
            raise ValueError(f"unknown attribute {name!r}; the attributes are {', '.join(HELPSTEER_ATTRIBUTES)}")
        try:
            targets[name] = float(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not a number") from None
    return targets
