"""Image augmentations that make "rejected" images: SeVa's and POVID's diffusion noise, SeVa's MoCo set, mDPO's crop.

    >>> from vlpref.data.augment import AugmentConfig, augment
    >>> noisy = augment(image, AugmentConfig(op="diffusion", noise_step=500), key="prompt-17")
    >>> crop = augment(image, AugmentConfig(op="mdpo-crop"), key="prompt-17")

Every op is a pure function of (image, config, key): the key (a record id) seeds it, so the same record gets the
same augmented image in every run, on every machine, whatever else is in the batch.

Ops (methods.md §3.1, §4.1, §5.3):
- `diffusion`: forward diffusion noise at step `noise_step` (`vlpref.numerics.noise`). `space="normalized"` is
  SeVa's: noise on the processor-normalised tensor, i.e. in pixel units x' = s*x + (1-s)*mean + n*std*eps per
  channel (exact; `mean`/`std` default to CLIP's, LLaVA-1.5's processor). `space="pixels"` is POVID's: noise on the
  [0, 1] image. Both are saved as 8-bit images, so every backend (local or a remote endpoint) sees the same file;
  values outside [0, 1] are clipped there (POVID's own code wraps them through a uint8 cast instead). Noise added
  at the image's own size is averaged away when the processor downsizes it (a 1008-px image's noise std drops
  about 3.7x at 336 px), so `size` pads and resizes to the model's input size first, as SeVa's noise (added after
  LLaVA's preprocessing) sees it.
- `moco`: SeVa's "moco" set, always all of: random resized crop (scale 0.2-1), horizontal flip (p 0.5), colour
  jitter (0.4, 0.4, 0.4, 0.1), grayscale (p 0.2), Gaussian blur (sigma 0.1-2).
- `mdpo-crop`: mDPO's corrupted image, a random resized crop keeping 1-20% of the area.
- single ops: `crop` (SeVa's RandomResizedCrop scale 0.36-0.64), `flip`, `jitter`, `grayscale`, `blur`, `rotate`
  (0-180 degrees), `invert`, `posterize` (2 bits), `solarize` (threshold 128).

Crops are resized back to the input size (the model's processor resizes anyway). torchvision has no CPU build here,
so the ops are written on PIL, following torchvision's definitions (crop sampling: 10 tries, then a centre crop).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from pydantic import Field

from vlpref.config import StrictModel
from vlpref.data.images import load_image, resolve_image
from vlpref.data.schema import Prompt
from vlpref.journal import content_key
from vlpref.numerics.noise import NoiseSchedule

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
Op = Literal["diffusion", "moco", "mdpo-crop", "crop", "flip", "jitter", "grayscale", "blur", "rotate", "invert",
             "posterize", "solarize"]


class AugmentConfig(StrictModel):
    """One augmentation; the defaults are SeVa's (diffusion noise at step 500 on the normalised tensor)."""

    op: Op = "diffusion"
    noise_step: int = Field(default=500, ge=0, le=999, description="diffusion step k (SeVa: 500 or 800; POVID: 500)")
    space: Literal["normalized", "pixels"] = Field(
        default="normalized", description="diffusion on the processor-normalised tensor (SeVa) or on pixels (POVID)")
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    size: int | None = Field(default=None, ge=1, description="diffusion: first pad to a square with the mean colour "
                             "and resize to size x size, as the model's processor would (SeVa: LLaVA-1.5's 336), so "
                             "the processor's own resize does not average the noise away")
    seed: int = 0

    def tag(self) -> str:
        """A short name for file names and strategies, e.g. 'diffusion500' or 'moco'."""
        return f"diffusion{self.noise_step}" if self.op == "diffusion" else self.op


def _seeds(config: AugmentConfig, key: str) -> tuple[random.Random, torch.Generator]:
    digest = hashlib.sha256(f"{config.model_dump_json()}|{key}".encode()).digest()
    value = int.from_bytes(digest[:8], "little")
    return random.Random(value), torch.Generator().manual_seed(value)


def augment(image: Image.Image, config: AugmentConfig, key: str) -> Image.Image:
    """The augmented copy of `image` for the record `key` (RGB; same size, except diffusion with `size` set)."""
    rng, generator = _seeds(config, key)
    image = image.convert("RGB")
    op = config.op
    if op == "diffusion":
        return _diffusion(image, config, generator)
    if op == "moco":
        image = _resized_crop(image, rng, (0.2, 1.0))
        image = _flip(image) if rng.random() < 0.5 else image
        image = _jitter(image, rng, 0.4, 0.4, 0.4, 0.1)
        image = _grayscale(image) if rng.random() < 0.2 else image
        return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
    if op == "mdpo-crop":
        return _resized_crop(image, rng, (0.01, 0.2))
    if op == "crop":
        return _resized_crop(image, rng, (0.36, 0.64))
    if op == "flip":
        return _flip(image)
    if op == "jitter":
        return _jitter(image, rng, 0.4, 0.4, 0.4, 0.1)
    if op == "grayscale":
        return _grayscale(image)
    if op == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
    if op == "rotate":
        return image.rotate(rng.uniform(0, 180), resample=Image.Resampling.NEAREST)
    if op == "invert":
        return ImageOps.invert(image)
    if op == "posterize":
        return ImageOps.posterize(image, 2)
    if op == "solarize":
        return ImageOps.solarize(image, 128)
    raise ValueError(f"unknown augmentation {op!r}")


def _diffusion(image: Image.Image, config: AugmentConfig, generator: torch.Generator) -> Image.Image:
    if config.size is not None:  # LLaVA-1.5's "pad" preprocessing: expand to a square with the mean, then resize
        side = max(image.size)
        square = Image.new("RGB", (side, side), tuple(round(255 * m) for m in config.mean))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = square.resize((config.size, config.size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W) in [0, 1]
    schedule = NoiseSchedule()
    if config.space == "pixels":
        noisy = schedule.add_noise(x, config.noise_step, generator)
    else:  # noise the normalised tensor z = (x - mean) / std, then map back: x' = z' * std + mean
        mean = torch.tensor(config.mean).view(3, 1, 1)
        std = torch.tensor(config.std).view(3, 1, 1)
        noisy = schedule.add_noise((x - mean) / std, config.noise_step, generator) * std + mean
    pixels = (noisy.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels, "RGB")


def _resized_crop(image: Image.Image, rng: random.Random, scale: tuple[float, float],
                  ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop sampling, resized back to the input size."""
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    side = min(width, height)  # fallback: the central square
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def _flip(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _grayscale(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def _jitter(image: Image.Image, rng: random.Random, brightness: float, contrast: float, saturation: float,
            hue: float) -> Image.Image:
    """ColorJitter: each factor drawn uniformly around 1 (hue: a shift), applied in a random order."""
    ops = ["brightness", "contrast", "saturation", "hue"]
    rng.shuffle(ops)
    for name in ops:
        if name == "brightness":
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - brightness, 1 + brightness))
        elif name == "contrast":
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(1 - contrast, 1 + contrast))
        elif name == "saturation":
            image = ImageEnhance.Color(image).enhance(rng.uniform(1 - saturation, 1 + saturation))
        else:
            image = _shift_hue(image, rng.uniform(-hue, hue))
    return image


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate every pixel's hue by `shift` turns (PIL's HSV mode stores hue in 0-255)."""
    h, s, v = image.convert("HSV").split()
    offset = round(shift * 256)
    h = h.point(lambda value: (value + offset) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def write_augmented(prompt: Prompt, root: Path, out: Path, config: AugmentConfig) -> list[str]:
    """Write and return the augmented copies of a prompt's images, relative to `out`.

    Augmentation is deterministic, so the bytes are made again on every run and a file that differs (a write cut
    short by a kill) is replaced; the replacement is atomic (temporary file, then rename)."""
    names = []
    for i, relative in enumerate(prompt.images):
        # The folder names the whole augmentation (op, step, space, seed …), so changing any of it never reuses
        # images (or answers) made under another.
        folder = f"{config.tag()}-{content_key(config.model_dump())[:8]}"
        name = f"images/{folder}/{hashlib.sha256(f'{prompt.id}|{i}'.encode()).hexdigest()[:16]}.png"
        source = load_image(root, relative, file=root, record_id=prompt.id, field=f"images[{i}]")
        buffer = BytesIO()
        augment(source, config, key=f"{prompt.id}|{i}").save(buffer, format="PNG")
        target = resolve_image(out, name)
        if not target.is_file() or target.read_bytes() != buffer.getvalue():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, target)
        names.append(name)
    return names
