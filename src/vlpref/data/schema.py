"""The records that flow through vlpref: prompt → candidate → annotation → preference pair.

    >>> from vlpref.data.schema import Prompt, Turn, PreferencePair
    >>> p = Prompt(id="q1", images=["images/q1.png"], turns=[Turn(role="user", text="<image>\\nWhat is red?")])
    >>> pair = PreferencePair(id="q1-0", prompt_id="q1", images=p.images, turns=p.turns,
    ...                       chosen="A red circle.", rejected="A blue cat.", strategy="vlfeedback-mean")

Conventions, fixed here once:

- A conversation is a list of `Turn`s (role + text). Images are marked in the text by the placeholder `<image>`, one
  per image, in order (LLaVA's convention). The count of placeholders equals `len(images)`; every record checks it.
- Images are paths relative to the dataset root (the folder holding `records.jsonl`). They are resolved inside that
  root only (see `vlpref.data.images`). In the Hugging Face form they become an `images` list of image features.
- A prompt's turns may end with an assistant turn: that is its reference answer (ground truth, SFT target).
- Every record is a pydantic model with `extra="forbid"`, so a misspelt field is an error, not silently dropped data.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.images import check_relative_path

IMAGE_TOKEN = "<image>"

Role = Literal["system", "user", "assistant"]

# An image path inside a dataset root: relative, no '..' (checked again against the real root when it is opened).
ImagePath = Annotated[str, AfterValidator(check_relative_path)]


class Turn(StrictModel):
    """One message of a conversation; `<image>` in `text` marks where an image goes."""

    role: Role
    text: str


class DecodingParams(StrictModel):
    """How a response was (or will be) sampled. temperature 0 means greedy."""

    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, description="0 disables top-k")
    max_new_tokens: int = Field(default=128, ge=1)
    seed: int | None = None


def count_image_tokens(turns: list[Turn]) -> int:
    return sum(turn.text.count(IMAGE_TOKEN) for turn in turns)


def _check_placeholders(turns: list[Turn], images: list[str], field: str) -> None:
    found = count_image_tokens(turns)
    if found != len(images):
        raise ValueError(
            f"{field}: the conversation has {found} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s); "
            f"put one {IMAGE_TOKEN} in the text per image"
        )


class Prompt(StrictModel):
    """A multimodal instruction: images plus a conversation, optionally ending in a reference answer."""

    id: str = Field(min_length=1)
    images: list[ImagePath] = Field(default_factory=list)
    turns: list[Turn] = Field(min_length=1)
    source: str | None = Field(default=None, description="dataset or generator the prompt came from")
    meta: dict[str, Any] = Field(default_factory=dict, description="task type, ground truth, anything else")

    @model_validator(mode="after")
    def _placeholders_match(self) -> Prompt:
        _check_placeholders(self.turns, self.images, "turns")
        if not any(t.role == "user" for t in self.turns):
            raise ValueError("turns: a prompt needs at least one user turn")
        return self

    @property
    def query(self) -> list[Turn]:
        """The turns a model answers: everything up to the last user turn."""
        last_user = max(i for i, t in enumerate(self.turns) if t.role == "user")
        return self.turns[: last_user + 1]

    @property
    def reference(self) -> str | None:
        """The reference answer, if the conversation ends with an assistant turn."""
        return self.turns[-1].text if self.turns[-1].role == "assistant" else None


class Candidate(StrictModel):
    """One sampled response to a prompt."""

    id: str = Field(min_length=1, description="unique; by convention '<prompt_id>/<model_id>/<index>'")
    prompt_id: str
    model_id: str
    text: str
    decoding: DecodingParams = Field(default_factory=DecodingParams)
    finish_reason: Literal["stop", "length", "unknown"] = "unknown"
    images: list[ImagePath] | None = Field(default=None,
                                           description="set when sampled under other images (SeVa, POVID)")
    variant: str = Field(default="original", description="the images it answered: 'original' or the augmentation's "
                                                         "tag (e.g. diffusion-500), as sampled")
    index: int = Field(default=0, ge=0, description="which of the model's n responses to this prompt and variant")


class AspectScore(StrictModel):
    """A judge's verdict on one aspect (e.g. Helpfulness): a score and the reason for it."""

    score: float | None = Field(description="None when the judge's text could not be parsed for this aspect")
    rationale: str = ""


class Annotation(StrictModel):
    """A judge's rating of one candidate. The raw judge text is always kept, parsed or not."""

    candidate_id: str
    prompt_id: str
    judge_id: str
    rubric: str = Field(description="rubric name, e.g. 'vlfeedback' or 'helpsteer'")
    aspects: dict[str, AspectScore] = Field(default_factory=dict)
    raw: str = Field(default="", description="the judge's full output text")
    parse_status: Literal["ok", "partial", "failed"] = "ok"
    error: str | None = None

    def mean_score(self) -> float | None:
        """Unweighted mean over aspects (VLFeedback's ranking rule); None if any aspect lacks a score."""
        scores = [a.score for a in self.aspects.values()]
        if not scores or any(s is None for s in scores):
            return None
        return sum(scores) / len(scores)


class PreferencePair(StrictModel):
    """A training pair: the same prompt, a chosen and a rejected response.

    `rejected_images` is set only for image-contrast methods (SeVa, POVID stage 2, mDPO), where the rejected side was
    produced under different (e.g. noised) images; the prompt text and placeholder count stay the same.
    """

    id: str = Field(min_length=1)
    prompt_id: str
    images: list[ImagePath] = Field(default_factory=list)
    turns: list[Turn] = Field(min_length=1, description="the prompt conversation, ending with a user turn")
    chosen: str
    rejected: str
    rejected_images: list[ImagePath] | None = None
    chosen_scores: dict[str, float] = Field(default_factory=dict)
    rejected_scores: dict[str, float] = Field(default_factory=dict)
    strategy: str = Field(description="how the pair was built, e.g. 'vlfeedback-mean', 'seva-noise', 'povid-inject'")
    provenance: dict[str, Any] = Field(default_factory=dict, description="models, judge, source files, settings")

    @model_validator(mode="before")
    @classmethod
    def _same_images_mean_none(cls, data: Any) -> Any:
        # One canonical form: rejected images equal to the prompt's are no image contrast at all.
        if isinstance(data, dict) and data.get("rejected_images") is not None:
            if data.get("rejected_images") == data.get("images", []):
                data = {**data, "rejected_images": None}
        return data

    @model_validator(mode="after")
    def _well_formed(self) -> PreferencePair:
        _check_placeholders(self.turns, self.images, "turns")
        if self.rejected_images is not None and len(self.rejected_images) != len(self.images):
            raise ValueError(
                f"rejected_images: {len(self.rejected_images)} image(s) but the prompt has {len(self.images)}"
            )
        if self.turns[-1].role != "user":
            raise ValueError("turns: a pair's prompt conversation must end with a user turn")
        return self


# The record kinds a dataset folder can hold, by the name written in its meta.json.
RECORD_TYPES: dict[str, type[StrictModel]] = {
    "prompts": Prompt,
    "candidates": Candidate,
    "annotations": Annotation,
    "pairs": PreferencePair,
}
