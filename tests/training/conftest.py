"""A tiny pairs dataset and a tiny SFT dataset with real image files, in vlpref's dataset layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vlpref.data.schema import PreferencePair, Prompt, Turn
from vlpref.data.store import write_records

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20),
          "purple": (150, 40, 160), "orange": (240, 140, 20)}
QUESTIONS = ["<image>\nWhat color is the picture?", "Describe the image <image> please.",
             "<image>\nWhat do you see?"]


def _images(root: Path) -> list[str]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for i, (name, rgb) in enumerate(COLORS.items()):
        Image.new("RGB", (32 + 8 * (i % 2), 32), rgb).save(root / "images" / f"{name}.png")
        names.append(name)
    return names


def make_pairs(root: Path, contrast: bool = False) -> Path:
    """Eight pairs (chosen names the image's colour, rejected another); with `contrast`, the last pair's rejected
    side has its own image."""
    names = _images(root)
    pairs = []
    for i in range(8):
        color, other = names[i % len(names)], names[(i + 2) % len(names)]
        pairs.append(PreferencePair(
            id=f"p{i}", prompt_id=f"q{i}", images=[f"images/{color}.png"],
            turns=[Turn(role="user", text=QUESTIONS[i % len(QUESTIONS)])],
            chosen=f"the picture is {color} .", rejected=f"it shows a {other} circle and a small square",
            rejected_images=[f"images/{other}.png"] if contrast and i == 7 else None, strategy="test"))
    write_records(root, "pairs", pairs)
    return root


def make_sft(root: Path) -> Path:
    names = _images(root)
    prompts = [Prompt(id=f"s{i}", images=[f"images/{names[i % len(names)]}.png"],
                      turns=[Turn(role="user", text=QUESTIONS[i % len(QUESTIONS)]),
                             Turn(role="assistant", text=f"the picture is {names[i % len(names)]} .")])
               for i in range(6)]
    write_records(root, "prompts", prompts)
    return root


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    return make_sft(tmp_path_factory.mktemp("sft"))
