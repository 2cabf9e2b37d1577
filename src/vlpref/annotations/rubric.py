"""Rubrics as data files, the judge prompt they make, and the parsing of a judge's answer back into scores.

    >>> rubric = load_rubric("vlfeedback")                  # or a path to your own YAML
    >>> text = judge_prompt(rubric, "What is in the image?", ["A red circle.", "A dog."])
    >>> scores, status = parse_ratings(rubric, judge_output_text, n=2)
    >>> scores[1]["Visual Faithfulness"]
    AspectScore(score=1.0, rationale='There is no dog.')

A rubric names its aspects, their scale, a prompt template (`{instruction}`, `{items}`), how each response is listed
(`item`) and the layout of the answer it asks for:
- `aspect-major` (VLFeedback): "#### <Aspect> Assessment", then "##### Output for Text k" with "Rating: r" and
  "Rationale: …";
- `response-major` (HelpSteer): "### Response k", a "Reasoning: …" line, then "<Aspect>: r" lines.

Parsing is lenient about markdown decoration (bold, extra #, spacing, "Rating: 4/5") and strict about meaning: a
rating outside the scale or a missing one is None, never guessed. `parse_status` is "ok" when every score of every
response parsed, "partial" when some did, "failed" when none did. The raw text is always kept by the caller.

With structured output the judge is asked for JSON instead (`ratings_schema`), parsed by `parse_json_ratings`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlpref.config import StrictModel, load_yaml
from vlpref.data.schema import AspectScore
from vlpref.errors import ConfigError

RUBRICS = Path(__file__).parent / "rubrics"


class Rubric(StrictModel):
    name: str
    aspects: list[str] = Field(min_length=1)
    scale: tuple[float, float]
    layout: Literal["aspect-major", "response-major"]
    item: str = Field(description="how one response is listed; {index} (1-based) and {text}")
    template: str = Field(description="the judge prompt; {instruction} and {items}")


def load_rubric(name_or_path: str) -> Rubric:
    """A shipped rubric by name (vlfeedback, helpsteer) or a rubric YAML file."""
    path = RUBRICS / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RUBRICS.glob("*.yaml")))
        raise ConfigError(f"rubric {name_or_path!r} is neither a shipped rubric ({shipped}) nor a file")
    return load_yaml(Rubric, path)


def judge_prompt(rubric: Rubric, instruction: str, texts: list[str]) -> str:
    items = "\n".join(rubric.item.format(index=i + 1, text=t.strip()) for i, t in enumerate(texts))
    return rubric.template.format(instruction=instruction.strip(), items=items).rstrip() + "\n"


def _rating(text: str | None, rubric: Rubric) -> float | None:
    if text is None:
        return None
    value = float(text)
    low, high = rubric.scale
    return value if low <= value <= high else None


def _sections(text: str, header: str) -> dict[str, str]:
    """Split `text` at lines matching the regex `header` (one group: the section's key) -> key -> body. A header
    line may carry markdown (#, *, -, >) and a trailing parenthesis, e.g. "##### Output for Text 1 (the dog)"."""
    pattern = re.compile(rf"^[\s#*>\-]*{header}[\s*]*(?:\([^\n]*\))?[\s*:#]*$", re.IGNORECASE | re.MULTILINE)
    marks = list(pattern.finditer(text))
    out: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.setdefault(mark.group(1).strip().lower(), text[mark.end():end])
    return out


# "Rating: 4", "**Rating:** 4/5", "Rating: [4]", "1. Helpfulness: 3", "Helpfulness: 3, Correctness: 4" (one line)
_LEAD = r"(?:^|[,;|]|\d[.)])[\s*_\-]*"


def _number(body: str, name: str) -> str | None:
    match = re.search(rf"{_LEAD}{re.escape(name)}[\s*_]*:[\s*_\[(]*(\d+(?:\.\d+)?)", body,
                      re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else None


def _text(body: str, name: str) -> str | None:
    """The text after "name:", continued over following lines up to a blank line or the next "Field:" line."""
    match = re.search(rf"^[\s*_\-]*{re.escape(name)}[\s*_]*:[\s*_]*(.*(?:\n(?![\s*_\-]*\w+[\s*_]*:)(?!\s*$).*)*)",
                      body, re.IGNORECASE | re.MULTILINE)
    return " ".join(line.strip() for line in match.group(1).splitlines()).strip() if match else None


def _status(scores: list[dict[str, AspectScore]]) -> str:
    got = [a.score is not None for per in scores for a in per.values()]
    return "ok" if all(got) else "partial" if any(got) else "failed"


def parse_ratings(rubric: Rubric, raw: str, n: int) -> tuple[list[dict[str, AspectScore]], str]:
    """Scores for responses 1..n from the judge's text, and the parse status (ok / partial / failed)."""
    scores = [{a: AspectScore(score=None) for a in rubric.aspects} for _ in range(n)]
    if rubric.layout == "aspect-major":
        names = "|".join(re.escape(a) for a in rubric.aspects)
        for aspect_key, body in _sections(raw, rf"({names})(?:\s+Assessment)?").items():
            aspect = next(a for a in rubric.aspects if a.lower() == aspect_key)
            for index, text_body in _sections(body, r"Output\s+for\s+Text\s+(\d+)").items():
                k = int(index) - 1
                if 0 <= k < n:
                    scores[k][aspect] = AspectScore(score=_rating(_number(text_body, "Rating"), rubric),
                                                    rationale=_text(text_body, "Rationale") or "")
    else:
        for index, body in _sections(raw, r"Response\s+(\d+)").items():
            k = int(index) - 1
            if not 0 <= k < n:
                continue
            reasoning = _text(body, "Reasoning") or ""
            for aspect in rubric.aspects:
                scores[k][aspect] = AspectScore(score=_rating(_number(body, aspect), rubric), rationale=reasoning)
    return scores, _status(scores)


def ratings_schema(rubric: Rubric, n: int) -> dict:
    """JSON schema for structured output: {"responses": [{"index", "<aspect>": {"rating", "rationale"}}, ...]}."""
    low, high = rubric.scale
    aspect = {"type": "object", "properties": {"rationale": {"type": "string"},
                                               "rating": {"type": "integer", "minimum": low, "maximum": high}},
              "required": ["rationale", "rating"], "additionalProperties": False}
    response = {"type": "object", "properties": {"index": {"type": "integer"}, **{a: aspect for a in rubric.aspects}},
                "required": ["index", *rubric.aspects], "additionalProperties": False}
    return {"type": "object", "properties": {"responses": {"type": "array", "items": response,
                                                           "minItems": n, "maxItems": n}},
            "required": ["responses"], "additionalProperties": False}


def parse_json_ratings(rubric: Rubric, raw: str, n: int) -> tuple[list[dict[str, AspectScore]], str]:
    """Scores from a structured (JSON) answer; anything malformed parses as None."""
    scores = [{a: AspectScore(score=None) for a in rubric.aspects} for _ in range(n)]
    fenced = re.search(r"```(?:json)?\s*(.*?)```", raw, re.DOTALL)  # some models wrap JSON in a code fence
    try:
        responses = json.loads(fenced.group(1) if fenced else raw)["responses"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return parse_ratings(rubric, raw, n)  # answered in the rubric's text format after all
    for position, item in enumerate(responses if isinstance(responses, list) else []):
        if not isinstance(item, dict):
            continue
        k = item.get("index", position + 1) - 1 if isinstance(item.get("index"), int) else position
        if not 0 <= k < n:
            continue
        for aspect in rubric.aspects:
            value = item.get(aspect)
            if isinstance(value, dict) and isinstance(value.get("rating"), int | float):
                scores[k][aspect] = AspectScore(score=_rating(str(value["rating"]), rubric),
                                                rationale=str(value.get("rationale", "")))
    return scores, _status(scores)
