"""Shared fixtures: tiny models of every supported architecture, built once per session and saved to disk."""

from __future__ import annotations

import pytest
from PIL import Image

from vlpref.models.tiny import ARCHITECTURES, save_tiny


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    """arch -> folder of a saved tiny model (standard HF layout), built offline."""
    root = tmp_path_factory.mktemp("tiny")
    return {arch: str(save_tiny(arch, root / arch)) for arch in ARCHITECTURES}


def solid(color: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.fixture
def images() -> list[Image.Image]:
    """Images of different sizes and colours, so batches mix image-token counts (Qwen's dynamic grid)."""
    return [solid((200, 20, 20)), solid((20, 200, 20), (48, 32)), solid((20, 20, 200), (24, 40))]
