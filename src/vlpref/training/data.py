"""Training examples from a dataset folder: pairs for the DPO family, prompts with reference answers for SFT.

    >>> from vlpref.training.data import load_examples
    >>> examples, dropped = load_examples("runs/pairs", vlm, kind="pairs", max_length=1024)

An `Example` is one prompt (turns + image paths) and the token ids of its responses: [chosen, rejected] for a pair,
[target] for SFT. Token ids are made once here, with the chat template's end-of-turn token appended (what generation
stops at, so the model learns to stop).

Truncation policy (`max_length`, counted in tokens with the image tokens expanded, prompt + response):
- image tokens and the prompt are never cut: a prompt cut short would train on an image or question the model
  never saw, and a cut inside an image's token block breaks the model's image-feature alignment;
- `truncation="response"` (default) cuts each response to fit, keeping its start (the end-of-turn token is then
  lost, as TRL does with `truncation_mode="keep_start"`);
- `truncation="drop"` drops the whole example instead;
- an example whose prompt alone leaves no room for a response is dropped either way.
Every dropped example is returned with its reason (the trainer writes them to `dropped.jsonl` and counts them).
An empty response is a fair side of a pair (only its end-of-turn token is scored); an empty SFT target is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlpref.data.images import load_record_images
from vlpref.data.schema import PreferencePair, Prompt
from vlpref.data.store import iter_records, read_meta
from vlpref.errors import RecordError, VlprefError
from vlpref.models.vlm import VLM, Chat

Truncation = Literal["response", "drop"]


@dataclass
class Example:
    id: str
    record: Prompt | PreferencePair  # where the turns and image paths come from
    responses: list[list[int]]  # token ids, end-of-turn included: [chosen, rejected] or [target]
    prompt_tokens: int  # the prompt's length in tokens, image tokens expanded

    @property
    def rejected_images(self) -> list[str] | None:
        return getattr(self.record, "rejected_images", None)


def query_of(record: Prompt | PreferencePair) -> list:
    return record.turns if isinstance(record, PreferencePair) else record.query


def chat_of(root: Path, record: Prompt | PreferencePair, images: list[str] | None = None) -> Chat:
    """The record's prompt with its images (or `images`, e.g. a pair's rejected images) loaded from `root`."""
    if images is None:
        return Chat(turns=query_of(record), images=load_record_images(root, record))
    substitute = record.model_copy(update={"images": images})
    return Chat(turns=query_of(record), images=load_record_images(root, substitute))


def _prompt_tokens(vlm: VLM, root: Path, record) -> int:
    return int(vlm.encode([chat_of(root, record)], padding_side="right")["attention_mask"].sum())


def load_examples(root: str | Path, vlm: VLM, kind: Literal["pairs", "sft"], max_length: int = 2048,
                  truncation: Truncation = "response") -> tuple[list[Example], list[dict]]:
    """Examples of the dataset at `root` and the dropped ones ({"id", "reason"}).

    kind "pairs" reads a pairs folder; kind "sft" reads a prompts folder (each prompt's last turn is its target
    answer) or a pairs folder (the chosen response is the target).
    """
    root = Path(root)
    found = read_meta(root)["kind"]
    allowed = ("pairs",) if kind == "pairs" else ("prompts", "pairs")
    if found not in allowed:
        raise VlprefError(f"{root}: a {found} dataset; this method trains on {' or '.join(allowed)}")
    examples, dropped = [], []
    for record in iter_records(root):
        if isinstance(record, PreferencePair):
            texts = [record.chosen, record.rejected] if kind == "pairs" else [record.chosen]
        else:
            if record.reference is None:
                raise RecordError("an SFT prompt must end with an assistant turn (its target answer)",
                                  file=root / "records.jsonl", record_id=record.id, field="turns")
            texts = [record.reference]
        # An empty answer is a fair DPO side (its end-of-turn token is scored: "saying nothing" can be preferred
        # or rejected), but an SFT target must say something.
        if kind == "sft" and not texts[0].strip():
            field = "chosen" if isinstance(record, PreferencePair) else "turns"
            raise RecordError("the target response is empty; nothing to fine-tune on",
                              file=root / "records.jsonl", record_id=record.id, field=field)
        responses = [vlm.response_ids(t) for t in texts]
        prompt_tokens = _prompt_tokens(vlm, root, record)
        room = max_length - prompt_tokens
        longest = max(len(r) for r in responses)
        if room < 1:
            dropped.append({"id": record.id, "reason": f"the prompt alone is {prompt_tokens} tokens "
                                                      f"(image tokens included); max_length is {max_length}"})
            continue
        if longest > room:
            if truncation == "drop":
                dropped.append({"id": record.id, "reason": f"prompt {prompt_tokens} + response {longest} tokens "
                                                          f"> max_length {max_length}"})
                continue
            responses = [r[:room] for r in responses]
        examples.append(Example(record.id, record, responses, prompt_tokens))
    if not examples:
        first = f"; first: {dropped[0]['id']}: {dropped[0]['reason']}" if dropped else ""
        raise VlprefError(f"{root}: no example left to train on ({len(dropped)} dropped by the truncation "
                          f"policy{first})")
    return examples, dropped
