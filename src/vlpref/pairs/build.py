"""`vlpref pairs --strategy …`: each paper's preference pairs from prompts, candidates and annotations.

    vlpref pairs --strategy vlfeedback --annotations runs/judged --out runs/pairs
    vlpref pairs --strategy helpsteer --annotations runs/judged --out runs/pairs      # + rejection-sampling, steerlm
    vlpref pairs --strategy seva --candidates runs/cands-noised --out runs/pairs
    vlpref pairs --strategy povid --out runs/pairs                                   # world prefs prompts, injector
    vlpref pairs --strategy image-contrast --out runs/pairs                          # mDPO's corrupted images

What each strategy reads:
- `vlfeedback`, `helpsteer`: an annotations folder (which names its candidates and prompts in meta.json).
- `seva`: a candidates folder sampled with `augment` set, holding each model's answers on the original and on the
  augmented images.
- `povid`, `image-contrast`: a prompts folder with reference answers (default: the world's prefs split). POVID's
  rejected answers come from the hallucination injector (the world's, offline); the image-contrast pairs take the
  reference as both responses and corrupt the images (`augment`, default mDPO's crop).

Everything a strategy did not turn into a pair is written to out/skipped.jsonl with its reason, and counted.
The rule functions live in `vlpref.pairs.strategies`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field, model_validator

from vlpref.config import StrictModel
from vlpref.data.augment import AugmentConfig, write_augmented
from vlpref.data.images import place_image, record_image_digests, resolve_image
from vlpref.data.schema import Annotation, Candidate, PreferencePair, Prompt
from vlpref.data.store import read_meta, read_records, write_records
from vlpref.errors import ConfigError, VlprefError
from vlpref.journal import Journal, content_key, run_journalled
from vlpref.pairs import strategies as rules
from vlpref.pairs.inject import InjectorConfig


class PairsConfig(StrictModel):
    recipe: Literal["pairs"] = "pairs"
    strategy: Literal["vlfeedback", "helpsteer", "seva", "povid", "image-contrast"] = "vlfeedback"
    annotations: str | None = Field(default=None, description="annotations folder (vlfeedback, helpsteer)")
    candidates: str | None = Field(default=None, description="candidates folder (seva; default: the annotations')")
    prompts: str | None = Field(default=None, description="prompts folder; default: the one the inputs name, "
                                "or the world's prefs split (povid, image-contrast)")
    margin: float = Field(default=0.0, ge=0.0, description="vlfeedback: drop pairs whose mean ratings differ less")
    injection_kinds: list[Literal["object", "attribute", "relation"]] = Field(
        default_factory=lambda: ["object", "attribute", "relation"],
        description="povid: one pair per prompt and kind the answer allows (yes/no answers are flipped instead)")
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig(op="mdpo-crop"),
                                   description="image-contrast: how the rejected images are corrupted")
    injector: InjectorConfig = Field(default_factory=InjectorConfig,
                                     description="povid: who rewrites the ground truth (default: the world's injector)")
    world_images: int = Field(default=10, ge=1, description="scenes of the world prefs split, when prompts is none "
                                                             "(povid, image-contrast)")
    seed: int = Field(default=0, description="helpsteer: the rejected draw; povid: the world injector's choices")

    @model_validator(mode="after")
    def _only_what_the_strategy_reads(self) -> PairsConfig:
        # A key counts as set when it differs from its default, so a config dumped whole (meta.json, a recipe
        # written by a program) still loads.
        for key in sorted(set(type(self).model_fields) - READS[self.strategy] - {"recipe", "strategy"}):
            if getattr(self, key) != type(self).model_fields[key].get_default(call_default_factory=True):
                readers = [name for name, keys in READS.items() if key in keys]
                raise ValueError(f"{key} does not apply to strategy {self.strategy} (it is read by "
                                 f"{', '.join(readers)})")
        return self


# What each strategy reads; any other key set in a config is refused, so no setting silently does nothing.
READS = {
    "vlfeedback": {"annotations", "candidates", "prompts", "margin"},
    "helpsteer": {"annotations", "candidates", "prompts", "seed"},
    "seva": {"candidates", "prompts"},
    "povid": {"prompts", "world_images", "injection_kinds", "injector", "seed"},
    "image-contrast": {"prompts", "world_images", "augment"},
}


class Injection(Protocol):
    text: str  # the rewritten answer
    kind: str  # object, attribute or relation
    detail: str  # what was injected, for the pair's provenance


class Injector(Protocol):
    """Rewrites a ground-truth answer with one hallucination of `kind` and no model call (the shapes world's
    `vlpref.world.inject.WorldInjector`); raises ValueError when the answer allows none of that kind."""

    def inject(self, prompt: Prompt, answer: str, kind: str) -> Injection: ...


@dataclass
class Built:
    """A strategy's output: the pairs, what made no pair (and why), the inputs to name in meta.json, and any SFT
    sets built alongside (helpsteer: rejection-sampling, steerlm)."""

    pairs: list[PreferencePair] = field(default_factory=list)
    skipped: list[rules.Skip] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, list[Prompt]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)  # figures about the pairs, for meta.json and the log


def build_pairs(config: PairsConfig, out: str | Path, log=print, injector: Injector | None = None
                ) -> list[PreferencePair]:
    """Pairs by `config.strategy`'s rule, written to out/. `injector`: POVID's rewriter for injector backend world
    (the CLI passes the shapes world's). Pairs from non-empty input that make no pair at all are an error."""
    out = Path(out)
    if config.strategy in ("povid", "image-contrast") and config.prompts is None:
        raise ConfigError(f"strategy {config.strategy}: prompts is unset; name a prompts folder with reference "
                          "answers (`vlpref pairs` and `vlpref prefs` build the shapes world's prefs split)")
    built = STRATEGIES[config.strategy](config, out, log, injector)
    _write(out, config, built, log)
    if not built.pairs and built.skipped:
        reasons = Counter(s.reason.split(" (")[0] for s in built.skipped).most_common(1)[0][0]
        raise VlprefError(f"pairs ({config.strategy}): no pairs from {len(built.skipped)} inputs (most often: "
                          f"{reasons}); every reason is in {out / 'skipped.jsonl'}")
    if not built.pairs:
        raise VlprefError(f"pairs ({config.strategy}): no pairs: the inputs ({', '.join(built.inputs.values())}) "
                          "hold nothing to pair (no prompt with responses)")
    return built.pairs


def _vlfeedback(config: PairsConfig, out: Path, log, injector) -> Built:
    return _rated(config, helpsteer=False)


def _helpsteer(config: PairsConfig, out: Path, log, injector) -> Built:
    return _rated(config, helpsteer=True)


def _rated(config: PairsConfig, helpsteer: bool) -> Built:
    """VLFeedback's and Li–Lin–Pei's rules: pairs from rated candidates (helpsteer adds its two SFT sets)."""
    if config.annotations is None:
        raise ConfigError(f"strategy {config.strategy} needs annotations (run `vlpref judge` first)")
    annotations: list[Annotation] = read_records(config.annotations, kind="annotations")
    candidates_dir = Path(config.candidates or named_input(config.annotations, "candidates"))
    prompts_dir = Path(config.prompts or named_input(config.annotations, "prompts"))
    if not annotations:
        raise VlprefError(f"{config.annotations}: no annotations (incomplete: "
                          f"{read_meta(config.annotations).get('incomplete', 0)} judge call(s) failed); rerun "
                          "`vlpref judge` until it finishes")
    candidates = _group(read_records(candidates_dir, kind="candidates"), "prompt_id")
    by_prompt = _group(annotations, "prompt_id")
    built = Built(inputs={"prompts": str(prompts_dir.resolve()), "annotations": str(Path(config.annotations).resolve()),
                          "candidates": str(candidates_dir.resolve())},
                  extra={"rejection-sampling": [], "steerlm": []} if helpsteer else {})
    rng = random.Random(config.seed)
    for prompt in read_records(prompts_dir, kind="prompts"):
        mine, rated = candidates.get(prompt.id, []), by_prompt.get(prompt.id, [])
        if not mine:
            continue
        if not helpsteer:
            made, why = rules.vlfeedback_pairs(prompt, mine, rated, margin=config.margin)
        else:
            made, why = rules.helpsteer_pairs(prompt, mine, rated, rng)
            # an empty answer can be a pair's rejected side, but it is nothing to fine-tune on
            targets = [c for c in mine if c.text.strip()]
            why += [rules.Skip(prompt.id, "empty response: no SFT target for rejection sampling or SteerLM", c.id)
                    for c in mine if not c.text.strip()]
            best = rules.best_response(prompt, targets, rated)
            if best is not None:
                built.extra["rejection-sampling"].append(best)
            by_id = {a.candidate_id: a for a in rated}
            built.extra["steerlm"].extend(r for c in targets if c.id in by_id
                                          and (r := rules.steerlm_record(prompt, c, by_id[c.id])) is not None)
        built.pairs.extend(made)
        built.skipped.extend(why)
    return built


def _seva(config: PairsConfig, out: Path, log, injector) -> Built:
    """SeVa: each model's answer on the original image against its answer of the same index on the augmented one."""
    if config.candidates is None:
        raise ConfigError("strategy seva needs candidates sampled with `augment` set (vlpref sample)")
    candidates_dir = Path(config.candidates)
    prompts_dir = Path(config.prompts or named_input(candidates_dir, "prompts"))
    by_prompt = _group(read_records(candidates_dir, kind="candidates"), "prompt_id")
    built = Built(inputs={"prompts": str(prompts_dir.resolve()), "candidates": str(candidates_dir.resolve())})
    for prompt in read_records(prompts_dir, kind="prompts"):
        mine: list[Candidate] = by_prompt.get(prompt.id, [])
        originals: dict[tuple[str, int], Candidate] = {}
        for c in mine:
            if c.variant == "original":
                if (c.model_id, c.index) in originals:
                    raise VlprefError(f"{candidates_dir}: candidates {originals[c.model_id, c.index].id} and {c.id} "
                                      f"are both {c.model_id}'s answer {c.index} on the original image")
                originals[c.model_id, c.index] = c
        augmented = [c for c in mine if c.variant != "original"]
        if mine and not augmented:
            built.skipped.append(rules.Skip(prompt.id, "no answer on augmented images (sample with augment set)"))
        for c in augmented:
            original = originals.get((c.model_id, c.index))
            made = (rules.seva_pair(prompt, original, c) if original is not None
                    else rules.Skip(prompt.id, "no answer on the original image to pair with", c.id))
            (built.skipped if isinstance(made, rules.Skip) else built.pairs).append(made)
    if built.pairs:  # SeVa relies on fluent wrong answers: say how many rejected answers are not fluent at all
        share = sum(rules.degenerate(p.rejected) for p in built.pairs) / len(built.pairs)
        built.stats["rejected_degenerate"] = round(share, 4)
    return built


def _image_contrast(config: PairsConfig, out: Path, log, injector) -> Built:
    """mDPO: the reference answer twice, the rejected side under corrupted images."""
    prompts_dir = Path(config.prompts)
    built = Built(inputs={"prompts": str(prompts_dir.resolve())})
    for prompt in read_records(prompts_dir, kind="prompts"):
        if prompt.reference is None or not prompt.images:
            built.skipped.append(rules.Skip(prompt.id, "needs images and a reference answer"))
            continue
        corrupted = write_augmented(prompt, prompts_dir, out, config.augment)
        built.pairs.append(rules.image_contrast_pair(prompt, prompt.reference, corrupted, config.augment.tag()))
    return built


def _povid(config: PairsConfig, out: Path, log, injector: Injector | None) -> Built:
    """Chosen = ground truth; rejected = each allowed injection kind (yes/no answers are flipped exactly)."""
    root = Path(config.prompts)
    built = Built(inputs={"prompts": str(root.resolve())})
    asks = []
    for prompt in read_records(root, kind="prompts"):
        if prompt.reference is None:
            built.skipped.append(rules.Skip(prompt.id, "no ground-truth answer"))
            continue
        if prompt.reference.strip().lower().rstrip(".") in ("yes", "no"):
            flipped = "No." if prompt.reference.strip().lower().startswith("yes") else "Yes."
            built.pairs.append(rules.povid_pair(prompt, flipped, "flip", "answer flipped"))
            continue
        asks.extend((prompt, kind) for kind in config.injection_kinds)
    if config.injector.backend == "world":
        if injector is None:
            raise ConfigError("injector backend world: this caller gave no injector (the `vlpref pairs` and "
                              "`vlpref prefs` commands use the shapes world's)")
        for prompt, kind in asks:
            try:
                injection = injector.inject(prompt, prompt.reference, kind=kind)
            except ValueError:  # e.g. no relation can be added to a one-object answer
                built.skipped.append(rules.Skip(prompt.id, f"the answer allows no {kind} injection"))
                continue
            made = rules.povid_pair(prompt, injection.text, injection.kind, injection.detail)
            (built.skipped if isinstance(made, rules.Skip) else built.pairs).append(made)
        return built
    # A chat model rewrites: each call is journalled, so a rerun repeats none that finished.
    from vlpref.pairs.inject import ChatInjector, kind_for

    chat = ChatInjector(config.injector)
    # Reasoning items get one rewrite whatever kinds were asked: one request and one pair, not three.
    unique: dict[tuple[str, str], tuple[Prompt, str]] = {}
    for p, k in asks:
        unique.setdefault((p.id, kind_for(p, k)), (p, kind_for(p, k)))
    asks = list(unique.values())
    ident = [config.injector.injector_id(), chat.prompt.model_dump(), config.injector.show_image,
             config.injector.decoding.model_dump()]
    keys = [content_key("inject", ident, p.model_dump(), k, record_image_digests(root, p)) for p, k in asks]
    journal = Journal(out / "journal.sqlite")

    def run(pending: list[int], landed) -> None:
        chat.inject_many([asks[i] for i in pending], root, on_done=landed)

    done = run_journalled(journal, keys, [f"{p.id} ({k})" for p, k in asks], run, out, field="rewrite",
                          announce=lambda n, todo: log(f"pairs (povid): {n} rewrites, {n - todo} already done, "
                                                       f"{todo} to request"))
    journal.close()
    done.raise_failures("rewrite request(s)", done="no pairs written; ")
    for (prompt, kind), text in zip(asks, done.values, strict=True):
        made = rules.povid_pair(prompt, text, kind, f"rewritten by {ident[0]}")
        (built.skipped if isinstance(made, rules.Skip) else built.pairs).append(made)
    return built


# One function per strategy: (config, out, log, injector) -> Built.
STRATEGIES = {"vlfeedback": _vlfeedback, "helpsteer": _helpsteer, "seva": _seva, "povid": _povid,
              "image-contrast": _image_contrast}


def named_input(folder: str | Path, kind: str) -> Path:
    """The `kind` folder a dataset was made from: the one its meta.json names, else a sibling folder of that name
    holding that kind (an imported release: `data import vlfeedback` writes prompts/, candidates/, annotations/)."""
    folder = Path(folder)
    named = read_meta(folder).get(kind)
    if named:
        return Path(named)
    sibling = folder.parent / kind
    if (sibling / "meta.json").is_file() and read_meta(sibling).get("kind") == kind:
        return sibling
    raise VlprefError(f"{folder}/meta.json names no {kind} folder and there is no {sibling}; pass --{kind}")


def _group(items, key) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in items:
        out.setdefault(getattr(item, key), []).append(item)
    return out


def _write(out: Path, config: PairsConfig, built: Built, log) -> None:
    prompts_dir = Path(built.inputs["prompts"])
    meta = {**built.inputs, **built.stats, "config": config.model_dump(),
            "config_hash": content_key(config.model_dump())}
    # Pairs name the prompt's images (relative to the prompts folder): they are placed here, so the folder stands
    # alone. Image-contrast pairs also name their corrupted images, which are already written under `out`.
    if config.strategy == "image-contrast":
        for pair in built.pairs:
            for relative in pair.images:
                place_image(resolve_image(prompts_dir, relative), out, relative)
    write_records(out, "pairs", built.pairs,
                  images_from=None if config.strategy == "image-contrast" else prompts_dir, **meta)
    with (out / "skipped.jsonl").open("w") as f:
        for s in built.skipped:
            f.write(json.dumps(asdict(s)) + "\n")
    for name, records in built.extra.items():
        write_records(out / name, "prompts", records, images_from=prompts_dir, **meta)
    reasons = Counter(s.reason.split(" (")[0] for s in built.skipped)
    log(f"pairs ({config.strategy}): {len(built.pairs)} pairs, {len(built.skipped)} skipped"
        + "".join(f", {key.replace('_', ' ')} {value:.1%}" for key, value in built.stats.items())
        + "".join(f"\n  {n} x {r}" for r, n in reasons.most_common())
        + "".join(f"\n  {name}: {len(records)} SFT records in {out / name}" for name, records in built.extra.items()))
