"""What `data export trl` writes is what TRL's own vision DPO collator consumes (TRL is a dev dependency)."""

from __future__ import annotations

import datasets
import pytest
import torch
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from vlpref.data.exporters import export_trl
from vlpref.data.schema import PreferencePair, Turn
from vlpref.data.store import write_records
from vlpref.models.vlm import VLM

from .conftest import write_image


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl"])
def test_trl_collator_reads_our_export(tmp_path, tiny_dirs, arch):
    write_image(tmp_path / "ds" / "images" / "a.png", (200, 0, 0), (32, 32))
    write_image(tmp_path / "ds" / "images" / "b.png", (0, 0, 200), (32, 32))
    pairs = [
        PreferencePair(id="p1", prompt_id="q1", images=["images/a.png"],
                       turns=[Turn(role="user", text="<image>\nWhat color is it?")],
                       chosen="It is red.", rejected="It is blue.", strategy="test"),
        PreferencePair(id="p2", prompt_id="q2", images=["images/b.png"],
                       turns=[Turn(role="user", text="Describe <image> please.")],
                       chosen="A blue square.", rejected="A green dog.", strategy="test"),
    ]
    write_records(tmp_path / "ds", "pairs", pairs)
    export_trl(tmp_path / "ds", tmp_path / "trl")
    rows = list(datasets.load_from_disk(str(tmp_path / "trl")))

    vlm = VLM.load(tiny_dirs[arch])
    batch = DataCollatorForVisionPreference(vlm.processor)(rows)
    # TRL stacks [chosen; rejected] along the batch: 2 pairs -> 4 sequences
    assert batch["input_ids"].shape[0] == 4
    completions = [
        vlm.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True).strip()
        for ids, mask in zip(batch["input_ids"], batch["completion_mask"], strict=True)
    ]
    expected = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    assert completions == [vlm.tokenizer.decode(vlm.tokenizer(t)["input_ids"]).strip() for t in expected]
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    with torch.no_grad():
        assert torch.isfinite(vlm.model(**inputs).logits).all()
