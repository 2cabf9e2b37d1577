"""The shapes world: procedural scenes with exact ground truth.

    >>> from vlpref.world.scenes import WorldConfig, make_scene
    >>> scene = make_scene(WorldConfig(), seed=0, index=7)
    >>> scene.objects[0]
    SceneObject(category='circle', color='red', size='large', row=0, col=2)
    >>> scene.render().size
    (48, 48)

A scene is a 3x3 grid of cells, each holding at most one object: a shape category (circle, square …) with a colour and
a size. Every shape is drawn, small ones at under half a large one's size, so the pixels settle every fact a
description can state. Positions and relations come from the grid: "at the top left", "left of", "above", "next to".
With 16-pixel cells and the tiny LLaVA's 16-pixel patches, each image token sees exactly one cell, so a tiny vision
tower can learn to see within minutes on a CPU.

Why a model still hallucinates here, as LLaVA does on COCO: co-occurrence. Categories come in partner pairs
(`WorldConfig.partners`): when a scene holds one, its partner joins with probability `co_occurrence`, far above chance.
The training data's annotators share that prior: the descriptions of some training scenes name an absent partner
(`phantom_captions`, as GPT-written instruction data names objects its source captions implied but the image lacks),
and a few of their questions believe in it too (`phantom_questions`; see `world.tasks.annotate`). A model trained on
them learns to name the partner even where the pixels plainly show no such shape: hallucination *despite* visual
evidence, the kind preference methods exist to reduce. POPE's "adversarial" negatives are exactly those partners,
"popular" negatives the most frequent categories. Evaluation and preference splits are annotated exactly.

`small_as_disc` brings back the irreducible kind: every small object drawn as the same disc of its colour, so its
category is absent from the pixels and a model can only guess it (metrics count those guesses apart, as
"evidence absent").

Everything is a pure function of (config, seed, index): same seed, byte-identical images and graphs.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Literal

from PIL import Image, ImageDraw
from pydantic import Field, model_validator

from vlpref.config import StrictModel

CATEGORIES = ("circle", "square", "triangle", "star", "cross", "heart", "diamond", "hexagon")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
    "orange": (245, 130, 20),
}
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
# Object radius as a share of the cell: large shapes, small shapes (about 3 px at 16-px cells: resolvable, but only
# just), and the disc of `small_as_disc`, which shows a small object's colour and nothing of its shape.
LARGE, SMALL, DISC = 0.43, 0.2, 0.13
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class WorldConfig(StrictModel):
    """What scenes look like. The defaults are the world every command uses when given no other."""

    cell: int = Field(default=16, ge=8, description="cell side in pixels; the image is 3 cells square")
    min_objects: int = Field(default=1, ge=1, le=9)
    max_objects: int = Field(default=4, ge=1, le=9)
    partners: list[tuple[str, str]] = Field(
        default_factory=lambda: [("circle", "square"), ("triangle", "star"), ("heart", "diamond"),
                                 ("cross", "hexagon")],
        description="category pairs that co-occur far more often than chance",
    )
    co_occurrence: float = Field(default=0.8, ge=0.0, le=1.0, description="P(partner present | category present)")
    small_fraction: float = Field(default=0.4, ge=0.0, le=1.0, description="share of small objects")
    small_as_disc: bool = Field(default=False, description="True draws every small object as the same disc of its "
                                "colour: its category is then absent from the pixels (the irreducible kind)")
    # The annotators' prior (see `annotate`): how often the training data names an absent partner.
    phantom_captions: float = Field(default=0.75, ge=0.0, le=1.0, description="P(an sft scene's descriptions name "
                                    "an absent partner of a present category) where one is absent")
    phantom_questions: float = Field(default=0.2, ge=0.0, le=1.0, description="P(its questions treat that "
                                     "partner as present); at most phantom_captions (one annotator, one belief)")
    category_weights: list[float] = Field(
        default_factory=lambda: [8, 6, 5, 4, 3, 3, 2, 2],
        description="relative frequency of each category as a scene's first object (COCO-like skew)",
    )
    background: tuple[int, int, int] = (245, 245, 240)

    @model_validator(mode="after")
    def _questions_within_captions(self) -> WorldConfig:
        if self.phantom_questions > self.phantom_captions:
            raise ValueError(f"phantom_questions ({self.phantom_questions}) cannot exceed phantom_captions "
                             f"({self.phantom_captions}): a partner the questions believe in, the captions name")
        return self

    @cached_property
    def partner_of(self) -> dict[str, str]:
        pairs = {}
        for a, b in self.partners:
            pairs[a], pairs[b] = b, a
        return pairs


@dataclass(frozen=True)
class SceneObject:
    category: str
    color: str
    size: Literal["small", "large"]
    row: int
    col: int


def position_phrase(row: int, col: int) -> str:
    """How descriptions say a cell: 'at the top left', 'on the left', 'in the center', 'at the bottom'."""
    if row == 1 and col == 1:
        return "in the center"
    if row == 1:
        return f"on the {COLS[col]}"
    if col == 1:
        return f"at the {ROWS[row]}"
    return f"at the {ROWS[row]} {COLS[col]}"


@dataclass(frozen=True)
class Scene:
    """One image's ground truth: its objects (reading order) and, derived from them, counts and relations."""

    id: str
    objects: tuple[SceneObject, ...]
    cell: int = 16
    background: tuple[int, int, int] = (245, 245, 240)
    small_as_disc: bool = False

    @property
    def categories(self) -> set[str]:
        return {o.category for o in self.objects}

    def count(self, category: str, color: str | None = None) -> int:
        return sum(o.category == category and (color is None or o.color == color) for o in self.objects)

    def relation(self, a: SceneObject, kind: str, b: SceneObject) -> bool:
        """'left of': a's column is left of b's; 'above': a's row is above b's; 'next to': adjacent cells."""
        if kind == "left of":
            return a.col < b.col
        if kind == "above":
            return a.row < b.row
        if kind == "next to":
            return abs(a.row - b.row) + abs(a.col - b.col) == 1
        raise ValueError(f"unknown relation {kind!r}")

    def to_dict(self) -> dict:
        return {"id": self.id, "objects": [asdict(o) for o in self.objects], "cell": self.cell,
                "background": list(self.background), "small_as_disc": self.small_as_disc}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        background = tuple(data.get("background", (245, 245, 240)))
        return cls(id=data["id"], objects=tuple(SceneObject(**o) for o in data["objects"]), cell=data["cell"],
                   background=background, small_as_disc=data.get("small_as_disc", True))

    def render(self) -> Image.Image:
        """Draw the scene: every object as its shape (LARGE or SMALL), or small ones as bare discs (`small_as_disc`)."""
        side = 3 * self.cell
        image = Image.new("RGB", (side, side), self.background)
        draw = ImageDraw.Draw(image)
        for o in self.objects:
            cx, cy = (o.col + 0.5) * self.cell, (o.row + 0.5) * self.cell
            if o.size == "small" and self.small_as_disc:
                r = self.cell * DISC
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=COLORS[o.color])
            else:
                _draw_shape(draw, o.category, cx, cy, self.cell * (LARGE if o.size == "large" else SMALL),
                            COLORS[o.color])
        return image


def _draw_shape(draw: ImageDraw.ImageDraw, category: str, cx: float, cy: float, r: float, fill) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if category == "circle":
        draw.ellipse(box, fill=fill)
    elif category == "square":
        draw.rectangle((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=fill)
    elif category == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif category == "star":  # five points: radii alternate between r and 0.45 r
        points = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                   cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(points, fill=fill)
    elif category == "cross":
        w = r * 0.35
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    elif category == "heart":
        draw.ellipse((cx - r, cy - r * 0.8, cx, cy + r * 0.1), fill=fill)
        draw.ellipse((cx, cy - r * 0.8, cx + r, cy + r * 0.1), fill=fill)
        draw.polygon([(cx - r, cy - r * 0.25), (cx + r, cy - r * 0.25), (cx, cy + r)], fill=fill)
    elif category == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=fill)
    elif category == "hexagon":
        draw.regular_polygon((cx, cy, r), 6, fill=fill)
    else:
        raise ValueError(f"unknown category {category!r}")


def make_scene(config: WorldConfig, seed: int, index: int) -> Scene:
    """Scene `index` of the world with `seed`; a pure function of its arguments."""
    rng = random.Random(f"{seed}:{index}")  # string seeding is stable across Python versions and platforms
    n = rng.randint(config.min_objects, config.max_objects)
    first = rng.choices(CATEGORIES, weights=config.category_weights)[0]
    categories = [first]
    partner = config.partner_of.get(first)
    if partner and n >= 2 and rng.random() < config.co_occurrence:
        categories.append(partner)
    # Fill up (repeats allowed, for counting). The first category's partner only ever enters through the prior
    # above, so P(partner | first) stays `co_occurrence` instead of drifting up by chance.
    others = [c for c in CATEGORIES if c != partner or partner in categories]
    while len(categories) < n:
        categories.append(rng.choice(others))
    cells = rng.sample(range(9), len(categories))
    objects = [
        SceneObject(category=c, color=rng.choice(list(COLORS)),
                    size="small" if rng.random() < config.small_fraction else "large", row=cell // 3, col=cell % 3)
        for c, cell in zip(categories, cells, strict=True)
    ]
    objects.sort(key=lambda o: (o.row, o.col))  # reading order: descriptions list objects in it
    return Scene(id=f"w{seed}-{index:06d}", objects=tuple(objects), cell=config.cell, background=config.background,
                 small_as_disc=config.small_as_disc)
