"""Processors saved without torchvision (as here, and as the tiny and world models are) load where it is installed.

A GPU box usually has torchvision; transformers then picks torchvision image processors and wants a video
processor for Qwen2-VL and SmolVLM. "torchvision present" is simulated: `import torchvision` succeeds and every
transformers availability check says yes.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from transformers.video_processing_utils import BaseVideoProcessor

from tests.conftest import solid
from vlpref.models.tiny import ARCHITECTURES, build_tiny
from vlpref.models.vlm import load_processor

VIDEO_ARCHS = ("qwen2_vl", "qwen2_5_vl", "smolvlm")  # the real processor classes take a video processor


@pytest.fixture
def torchvision_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    for name, module in list(sys.modules.items()):
        if name.startswith("transformers") and hasattr(module, "is_torchvision_available"):
            monkeypatch.setattr(module, "is_torchvision_available", lambda: True)


def _inputs(processor) -> dict[str, torch.Tensor]:
    text = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "red"}]}],
        chat_template=processor.chat_template, add_generation_prompt=True, tokenize=False,
    )
    return dict(processor(text=[text], images=[[solid((200, 20, 20), (48, 32))]], return_tensors="pt"))


def _same_as_built(arch: str, loaded) -> None:
    _, built = build_tiny(arch)
    expected, got = _inputs(built), _inputs(loaded)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert loaded.chat_template == built.chat_template


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_loads_where_torchvision_is_installed(arch, tiny_dirs, torchvision_present):
    _same_as_built(arch, load_processor(tiny_dirs[arch]))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_loads_where_torchvision_is_missing(arch, tiny_dirs):
    _same_as_built(arch, load_processor(tiny_dirs[arch]))


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
def test_saved_folder_has_the_video_processor_config(arch, tiny_dirs):
    """What transformers' own AutoProcessor reads for the video processor it builds where torchvision is installed
    (its error was "Can't load video processor ... video_preprocessor_config.json")."""
    config, _ = BaseVideoProcessor.get_video_processor_dict(tiny_dirs[arch])
    image = json.loads((Path(tiny_dirs[arch]) / "processor_config.json").read_text())["image_processor"]
    assert config["video_processor_type"] == image["image_processor_type"].replace("Image", "Video")
    for key in ("patch_size", "merge_size", "temporal_patch_size", "size", "image_mean", "image_std"):
        assert config.get(key) == image.get(key), key


def test_saved_with_a_video_processor_loads_without_torchvision(tiny_dirs, tmp_path):
    """A folder saved where torchvision is installed names its torchvision classes; it loads here all the same."""
    folder = tmp_path / "qwen"
    folder.mkdir()
    for path in Path(tiny_dirs["qwen2_vl"]).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "processor_config.json").read_text())
    config["video_processor"] = {**config["image_processor"], "video_processor_type": "Qwen2VLVideoProcessor"}
    (folder / "processor_config.json").write_text(json.dumps(config))
    _same_as_built("qwen2_vl", load_processor(str(folder)))


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
def test_a_legacy_chat_template_json_is_read(arch, tiny_dirs, tmp_path):
    """Hub checkpoints such as Qwen2-VL-7B-Instruct keep the template in chat_template.json, not the tokenizer's
    config: the processor's own reader finds it."""
    folder = tmp_path / arch
    folder.mkdir()
    for path in Path(tiny_dirs[arch]).iterdir():
        if path.name != "chat_template.jinja":
            (folder / path.name).write_bytes(path.read_bytes())
    template = (Path(tiny_dirs[arch]) / "chat_template.jinja").read_text()
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    _same_as_built(arch, load_processor(str(folder)))
