"""Real-size bench layouts: the right sizes (counted on the meta device, nothing allocated), built on the device
asked for, and their tiny variants run the same code path on a CPU."""

import pytest
import torch

from vlpref.bench.layouts import LAYOUTS, build_layout, parameter_count


def test_llava_7b_layout_has_llava_1_5_7b_parameter_count():
    # By hand: Llama-2-7B (6,738,415,616 at vocabulary 32,000) + 64 more rows in the embedding and the LM head
    # (2 x 64 x 4096); CLIP ViT-L/14 at 336 px (303,507,456: 24 layers of 12,596,224 = 302,309,376, patch conv
    # 602,112, 577 x 1024 positions, the class embedding and the pre / post norms 1024 + 4 x 1024); the projector
    # 1024 x 4096 + 4096 + 4096 x 4096 + 4096.
    llama = 6_738_415_616 + 2 * 64 * 4096
    clip = 24 * 12_596_224 + 3 * 14 * 14 * 1024 + 577 * 1024 + 1024 + 4 * 1024
    projector = 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    assert clip == 303_507_456
    assert parameter_count(LAYOUTS["llava-1.5-7b"]) == llama + clip + projector  # 7,063,427,072


@pytest.mark.parametrize(("name", "billions"), [("llava-1.5-13b", 13.35), ("qwen2-vl-2b", 2.21), ("qwen2-vl-7b", 8.29),
                                               ("qwen2.5-vl-3b", 3.75), ("qwen2.5-vl-7b", 8.29),
                                               ("idefics3-8b", 8.46)])
def test_layouts_match_their_checkpoints_sizes(name, billions):
    # the checkpoints' published sizes (model cards / safetensors totals), to 10M parameters
    assert parameter_count(LAYOUTS[name]) / 1e9 == pytest.approx(billions, abs=0.01)


def test_real_layout_is_created_on_the_device_asked_for():
    model, _ = build_layout(LAYOUTS["qwen2-vl-7b"], device="meta", dtype=torch.bfloat16)  # 8.3B, no memory used
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(("name", "tied", "image_tokens"), [("llava-1.5-7b", False, 576), ("qwen2-vl-2b", True, 144),
                                                            ("idefics3-8b", False, 169)])
def test_shrunk_layout_keeps_vocabulary_tying_and_image_tokens(name, tied, image_tokens):
    from PIL import Image

    from vlpref.data.schema import Turn
    from vlpref.models.vlm import VLM, Chat

    layout = LAYOUTS[name].shrunk()
    model, processor = build_layout(layout)
    text = model.config.get_text_config()
    assert text.hidden_size == 64 and text.num_hidden_layers == 2  # tiny widths
    assert model.get_output_embeddings().weight.shape[0] == LAYOUTS[name].vocab_size  # the real LM head
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) is tied
    vlm = VLM(model, processor)
    image = Image.new("RGB", (layout.image_size, layout.image_size))
    encoded = vlm.encode([Chat([Turn(role="user", text="<image>\nwhat ?")], [image])])
    config = model.config
    image_id = config.image_token_id if hasattr(config, "image_token_id") else config.image_token_index
    assert int((encoded["input_ids"] == image_id).sum()) == image_tokens == layout.image_tokens


def test_qwen_rotary_sections_split_half_the_head_width_as_the_checkpoints():
    real = build_layout(LAYOUTS["qwen2-vl-2b"], device="meta")[0].config.get_text_config()
    assert real.rope_parameters["mrope_section"] == [16, 24, 24]  # Qwen2-VL's own, at head width 128
    small = build_layout(LAYOUTS["qwen2-vl-2b"].shrunk(), device="meta")[0].config.get_text_config()
    assert small.rope_parameters["mrope_section"] == [2, 3, 3]  # head width 16: 8 = 2 + 3 + 3
