"""Augmentations: deterministic per record, and each op does what its definition says."""

import numpy as np
import pytest
from PIL import Image

from vlpref.data.augment import AugmentConfig, augment
from vlpref.numerics.noise import NoiseSchedule

OPS = ["diffusion", "moco", "mdpo-crop", "crop", "flip", "jitter", "grayscale", "blur", "rotate", "invert",
       "posterize", "solarize"]


def picture() -> Image.Image:
    x = np.zeros((32, 48, 3), dtype=np.uint8)
    x[:, :24] = (200, 30, 30)
    x[:, 24:] = (30, 30, 200)
    x[8:16, 8:16] = (250, 250, 0)
    return Image.fromarray(x)


@pytest.mark.parametrize("op", OPS)
def test_same_key_same_image_other_key_may_differ(op):
    config = AugmentConfig(op=op)
    a, b = augment(picture(), config, "r1"), augment(picture(), config, "r1")
    assert a.size == picture().size and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("op", ["diffusion", "moco", "mdpo-crop"])
def test_keys_give_different_images(op):
    config = AugmentConfig(op=op)
    assert augment(picture(), config, "r1").tobytes() != augment(picture(), config, "r2").tobytes()


def test_flip_and_invert_exact():
    x = np.asarray(picture())
    assert np.array_equal(np.asarray(augment(picture(), AugmentConfig(op="flip"), "k")), x[:, ::-1])
    assert np.array_equal(np.asarray(augment(picture(), AugmentConfig(op="invert"), "k")), 255 - x)


def test_pixel_noise_statistics():
    """On a mid-grey image, pixel-space noise at k=500 keeps the mean and adds std noise(500) (no clipping)."""
    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    y = np.asarray(augment(grey, AugmentConfig(op="diffusion", space="pixels", noise_step=100), "k")) / 255
    s = NoiseSchedule()
    assert y.mean() == pytest.approx(s.signal(100) * 128 / 255, abs=0.01)
    assert y.std() == pytest.approx(s.noise(100), rel=0.05)


def test_normalized_noise_is_noise_on_the_processor_tensor():
    """In 'normalized' space the noise std in pixel units is noise(k) * std per channel, and the image is pulled
    towards the normalisation mean by (1 - signal(k))."""
    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    config = AugmentConfig(op="diffusion", noise_step=100, mean=(0.2, 0.5, 0.8), std=(0.1, 0.1, 0.1))
    y = np.asarray(augment(grey, config, "k")) / 255
    s = NoiseSchedule()
    for c, mean in enumerate(config.mean):
        expected = s.signal(100) * 128 / 255 + (1 - s.signal(100)) * mean
        assert y[..., c].mean() == pytest.approx(expected, abs=0.005)
        assert y[..., c].std() == pytest.approx(s.noise(100) * 0.1, rel=0.1)


def test_mdpo_crop_keeps_a_small_area():
    """A crop of 1-20% of the area, scaled back up. Red encodes x and green y, so the value ranges of the output
    measure the crop box."""
    side = 256
    ramp = np.arange(side, dtype=np.uint8)
    x = np.stack([np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side)), np.zeros((side, side), np.uint8)], -1)
    for key in range(20):
        y = np.asarray(augment(Image.fromarray(x), AugmentConfig(op="mdpo-crop"), str(key))).astype(int)
        width, height = np.ptp(y[..., 0]) + 1, np.ptp(y[..., 1]) + 1
        assert 0.01 * side**2 * 0.8 <= width * height <= 0.2 * side**2 * 1.05


def test_unknown_op_names_the_choices():
    with pytest.raises(Exception, match="diffusion"):
        AugmentConfig(op="noise")


def test_diffusion_at_the_model_input_size():
    """With size set, the image is padded to a square with the mean colour and resized before the noise, so the
    noise survives the processor (no further resize)."""
    wide = Image.new("RGB", (200, 100), (128, 128, 128))
    config = AugmentConfig(op="diffusion", noise_step=0, size=64, space="pixels")
    y = np.asarray(augment(wide, config, "k"))
    assert y.shape == (64, 64, 3)
    band = round(255 * config.mean[0])
    assert abs(int(np.median(y[:8, :, 0])) - band) <= 3  # top padding: the mean colour
    assert abs(int(np.median(y[28:36, :, 0])) - 128) <= 3  # the image itself
