"""Shared fixtures: tiny models of every supported architecture, built once per session and saved to disk."""

from __future__ import annotations

import pytest
from PIL import Image

from vlpref.models.tiny import ARCHITECTURES, save_tiny
from vlpref.models.vlm import VLM


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    """arch -> folder of a saved tiny model (standard HF layout), built offline."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: str(save_tiny(arch, root / arch)) for arch in ARCHITECTURES}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def vlm(request, tiny_dirs) -> VLM:
    """A tiny model of each supported architecture (the test runs once per architecture)."""
    return VLM.load(tiny_dirs[request.param])


def solid(color: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.fixture
def images() -> list[Image.Image]:
    """Images of different sizes and colours, so batches mix image-token counts (Qwen's dynamic grid)."""
    return [solid((200, 20, 20)), solid((20, 200, 20), (48, 32)), solid((20, 20, 200), (24, 40))]
