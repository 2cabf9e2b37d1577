"""POVID's hallucination injection through a chat model (GPT-4o, Gemini, a served VLM, a local VLM).

    >>> injector = ChatInjector(InjectorConfig(backend="openai", endpoint=RemoteEndpoint(...)))
    >>> texts = injector.inject_many([(prompt, "object"), (prompt, "relation")], root="data/prompts")

The prompt is a data file (`prompts/povid_inject.yaml`, or your own via `template`): one line per kind (object,
attribute, relation, and reasoning for "Reasoning: … Answer: …" items) inside a template that shows the question
and the correct answer, and the image with them. Offline, `vlpref.world.inject.WorldInjector` makes the same
rewrites exactly from the scene graph; `vlpref pairs --strategy povid` uses that one unless told otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlpref.config import StrictModel, load_yaml
from vlpref.data.schema import DecodingParams, Prompt, Turn
from vlpref.errors import ConfigError
from vlpref.models.remote import Completion, Failure, RemoteEndpoint, check_backend

PROMPTS = Path(__file__).parent / "prompts"
REASONING = re.compile(r"reasoning\s*:.*answer\s*:", re.IGNORECASE | re.DOTALL)


class InjectionPrompt(StrictModel):
    kinds: dict[str, str]
    template: str


class InjectorConfig(StrictModel):
    backend: Literal["world", "openai", "local"] = Field(
        default="world", description="world: exact rewrites from the scene graph; openai / local: a chat model")
    endpoint: RemoteEndpoint | None = None
    model: str | None = Field(default=None, description="backend local: hub id, path or world:<name>")
    decoding: DecodingParams = Field(default_factory=lambda: DecodingParams(temperature=0.0, max_new_tokens=1024))
    template: str = Field(default="povid_inject", description="a shipped prompt name or a prompt YAML file")
    show_image: bool = Field(default=True, description="send the image with the rewrite request")

    @model_validator(mode="after")
    def _backend_settings(self) -> InjectorConfig:
        check_backend(self.backend, self.endpoint, self.model)
        return self

    def injector_id(self) -> str:
        if self.backend == "openai":
            return f"{self.endpoint.model}@{self.endpoint.base_url}"
        return self.model if self.backend == "local" else "world"


def load_injection_prompt(name_or_path: str) -> InjectionPrompt:
    path = PROMPTS / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"injection prompt {name_or_path!r} is neither shipped (povid_inject) nor a file")
    return load_yaml(InjectionPrompt, path)


def kind_for(prompt: Prompt, kind: str) -> str:
    """Reasoning items ('Reasoning: … Answer: …') get POVID's reasoning rewrite whatever kind was asked."""
    return "reasoning" if prompt.reference and REASONING.search(prompt.reference) else kind


class ChatInjector:
    def __init__(self, config: InjectorConfig, complete=None):
        from vlpref.models.remote import endpoint_complete, local_complete

        self.config = config
        self.prompt = load_injection_prompt(config.template)
        if complete is None:
            openai = config.backend == "openai"
            complete = endpoint_complete(config.endpoint) if openai else local_complete(config.model)
        self.complete = complete

    def messages(self, prompt: Prompt, kind: str, root: Path) -> list[dict]:
        from vlpref.data.images import load_record_images
        from vlpref.models.chat_api import to_openai_messages

        if kind not in self.prompt.kinds:
            raise ConfigError(f"the injection prompt has no kind {kind!r}; it has {', '.join(self.prompt.kinds)}")
        question = "\n".join(t.text.replace("<image>", "").strip() for t in prompt.query if t.role == "user")
        text = self.prompt.template.format(instruction=self.prompt.kinds[kind], question=question,
                                           answer=prompt.reference)
        images = load_record_images(root, prompt) if self.config.show_image else []
        return to_openai_messages([Turn(role="user", text="<image>" * len(images) + "\n" + text)], images)

    def inject_many(self, items: list[tuple[Prompt, str]], root: str | Path, on_done=None) -> list[str | Failure]:
        """The rewritten answer (or the Failure) for each (prompt, kind), surrounding quotes stripped;
        `on_done(i, result)` the moment each one lands. Messages are built when their request is sent."""

        def make(prompt, kind):
            return lambda: self.messages(prompt, kind_for(prompt, kind), Path(root))

        def clean(result):
            return result.text.strip().strip('"').strip() if isinstance(result, Completion) else result

        results = self.complete([make(p, k) for p, k in items], [self.config.decoding] * len(items),
                                [{}] * len(items), None if on_done is None else lambda i, r: on_done(i, clean(r)))
        return [clean(r) for r in results]
