"""OpenAI chat-completions messages <-> vlpref turns and images, for the remote client and for `vlpref serve`.

    >>> messages = to_openai_messages([Turn(role="user", text="<image>\\nWhat is red?")], [image])
    >>> messages[0]["content"][0]["type"], messages[0]["content"][1]
    ('image_url', {'type': 'text', 'text': '\\nWhat is red?'})
    >>> turns, images = from_openai_messages(messages)          # back: the same turns, the same pixels

Images travel as base64 PNG data URLs, in the place of their `<image>` placeholder. The server accepts only data
URLs: it never fetches a URL or reads a path it is handed (no network, no file access on a client's behalf).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from PIL import Image

from vlpref.data.schema import IMAGE_TOKEN, Turn

DATA_URL_PREFIX = "data:image/"
MAX_PIXELS = 40_000_000  # far above any VLM's input; a small PNG must not decode into gigabytes


def image_data_url(image: Image.Image | bytes) -> str:
    """A PNG data URL for a PIL image (or the bytes of an image file, re-encoded as PNG only if it is not PNG)."""
    if isinstance(image, bytes):
        if image[:8] == b"\x89PNG\r\n\x1a\n":
            return "data:image/png;base64," + base64.b64encode(image).decode()
        image = Image.open(io.BytesIO(image))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def to_openai_messages(turns: list[Turn], images: list[Image.Image | bytes]) -> list[dict[str, Any]]:
    """Turns with `<image>` placeholders -> OpenAI messages; a turn with images gets a content-part list."""
    queue = list(images)
    messages = []
    for turn in turns:
        if IMAGE_TOKEN not in turn.text:
            messages.append({"role": turn.role, "content": turn.text})
            continue
        parts: list[dict[str, Any]] = []
        pieces = turn.text.split(IMAGE_TOKEN)
        for i, piece in enumerate(pieces):
            if i > 0:
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(queue.pop(0))}})
            if piece:
                parts.append({"type": "text", "text": piece})
        messages.append({"role": turn.role, "content": parts})
    if queue:
        raise ValueError(f"{len(images)} images but only {len(images) - len(queue)} {IMAGE_TOKEN} placeholders")
    return messages


def decode_data_url(url: str) -> Image.Image:
    if not url.startswith(DATA_URL_PREFIX) or ";base64," not in url:
        raise ValueError("image_url must be a base64 data URL (data:image/...;base64,...); "
                         "this server does not fetch URLs or read paths")
    try:
        data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        image = Image.open(io.BytesIO(data))  # reads the header only: the size is known before decoding
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"image is {image.width}x{image.height}; this server takes at most {MAX_PIXELS} pixels")
        image.load()
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"image_url does not hold a readable image: {error}") from None
    return image.convert("RGB")


def from_openai_messages(messages: list[dict[str, Any]]) -> tuple[list[Turn], list[Image.Image]]:
    """OpenAI messages -> turns with `<image>` placeholders and the decoded images, in order."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    turns, images = [], []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}]: role must be system, user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            if IMAGE_TOKEN in content:
                raise ValueError(f"messages[{i}]: send images as image_url parts, not {IMAGE_TOKEN} in text")
            turns.append(Turn(role=message["role"], text=content))
            continue
        if not isinstance(content, list):
            raise ValueError(f"messages[{i}].content must be a string or a list of parts")
        text = ""
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                if IMAGE_TOKEN in part["text"]:
                    raise ValueError(f"messages[{i}].content[{j}]: send images as image_url parts")
                text += part["text"]
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                try:
                    images.append(decode_data_url(str(part["image_url"].get("url", ""))))
                except ValueError as error:
                    raise ValueError(f"messages[{i}].content[{j}]: {error}") from None
                text += IMAGE_TOKEN
            else:
                raise ValueError(f"messages[{i}].content[{j}]: parts must be text or image_url")
        turns.append(Turn(role=message["role"], text=text))
    return turns, images
