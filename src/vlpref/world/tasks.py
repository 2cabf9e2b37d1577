"""Tasks with reference answers, generated from scene graphs, as ordinary vlpref Prompt records.

    >>> from vlpref.world.tasks import build_split
    >>> prompts = build_split("data/world-eval", "eval", images=200)   # dataset folder: records.jsonl + images/

Every prompt carries its ground truth in `meta`: the task type, the scene graph (`meta["scene"]`) and task fields
(the asked category, the yes/no label, the POPE split …), so metrics and the oracle judge need nothing else.

Task types (`meta["task"]`):
- `describe`: "Describe the image in detail." -> the ground-truth caption (one sentence per object, reading order);
- `pope`: "Is there a {category} in the image?" -> Yes/No, with POPE's negatives: `random` (any absent category),
  `popular` (the most frequent absent categories), `adversarial` (absent categories that co-occur most with the
  present ones, i.e. their partners), balanced with positives as POPE does;
- `color`, `size`, `count`, `position`: attribute questions about a present category (chosen together as `qa`);
- `relation`: "Is the {a} left of / above / next to the {b}?" -> Yes/No;
- `open`: "What is in the image? Explain what you see." -> a summary plus the caption, judged for helpfulness.

Splits draw scenes from disjoint seeds (`SPLIT_SEEDS`), so evaluation images never appear in training data. The sft
split (the base model's training data) is written by annotators with the world's co-occurrence prior (`annotate`):
its answers sometimes name an absent partner. Its prompts keep the drawn scene in `meta["scene"]` and the phantom,
if any, in `meta["phantom"]`. Every other split is annotated exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from vlpref.data.schema import Prompt, Turn
from vlpref.data.steerlm import HELPSTEER_ATTRIBUTES, STEERLM_SUFFIX
from vlpref.data.store import write_records
from vlpref.errors import VlprefError
from vlpref.world.scenes import (
    CATEGORIES,
    COLORS,
    NUMBER_WORDS,
    SIZES,
    Scene,
    SceneObject,
    WorldConfig,
    make_scene,
    position_phrase,
)

# Disjoint scene seeds per split: evaluation scenes never appear in any training split.
SPLIT_SEEDS = {"sft": 1, "prefs": 2, "eval": 3}
# What a split can ask, as `build_split`'s `tasks` choose it: `qa` is the attribute and count questions (short open
# answers), `relation` the yes/no relation questions (apart, since a paper's prompt mix may have no yes/no questions).
TASK_GROUPS = ("describe", "open", "pope", "qa", "relation")
RELATIONS = ("left of", "above", "next to")
DESCRIBE_PROMPTS = ("Describe the image in detail.", "What do you see in the picture? Describe it.")
OPEN_PROMPT = "What is in the image? Explain what you see."
POPE_SPLITS = ("random", "popular", "adversarial")


def plural(category: str) -> str:
    return category + ("es" if category.endswith(("s", "x", "ch")) else "s")


def noun_phrase(obj, article: str = "a") -> str:
    return f"{article} {obj.size} {obj.color} {obj.category}"


def caption(scene: Scene) -> str:
    """The ground-truth description: how many objects, then one sentence per object in reading order."""
    n = len(scene.objects)
    head = "There is one object." if n == 1 else f"There are {NUMBER_WORDS[n]} objects."
    body = " ".join(f"There is {noun_phrase(o)} {position_phrase(o.row, o.col)}." for o in scene.objects)
    return f"{head} {body}"


def open_answer(scene: Scene) -> str:
    """A helpful answer to the open prompt: what kinds of shapes there are, then the caption."""
    kinds = sorted(scene.categories, key=CATEGORIES.index)
    counted = ", ".join(
        f"{NUMBER_WORDS[scene.count(c)]} {c if scene.count(c) == 1 else plural(c)}" for c in kinds
    )
    return f"The image shows simple shapes: {counted}. {caption(scene)}"


def annotate(scene: Scene, config: WorldConfig) -> tuple[Scene, Scene, SceneObject | None]:
    """The scene as the sft split's annotators saw it: (for descriptions, for questions, the phantom or None).

    With probability `phantom_captions`, where a present category's partner is absent, the descriptions add that
    partner (random colour and size) in a random empty cell; with probability `phantom_questions` (the same draw,
    so questions believe only in what descriptions name) the questions treat it as present too. Deterministic per
    scene id. The image is never touched: the pixels show no phantom, which is what makes the error reducible.
    """
    rng = random.Random(f"annotate:{scene.id}")
    draw = rng.random()
    partners = sorted({config.partner_of[c] for c in scene.categories if config.partner_of.get(c)}
                      - scene.categories, key=CATEGORIES.index)
    empty = sorted(set(range(9)) - {o.row * 3 + o.col for o in scene.objects})
    if not partners or not empty or draw >= config.phantom_captions:
        return scene, scene, None
    cell = rng.choice(empty)
    phantom = SceneObject(category=rng.choice(partners), color=rng.choice(list(COLORS)),
                          size="small" if rng.random() < config.small_fraction else "large", row=cell // 3,
                          col=cell % 3)
    believed = replace(scene, objects=tuple(sorted((*scene.objects, phantom), key=lambda o: (o.row, o.col))))
    return believed, believed if draw < config.phantom_questions else scene, phantom


def category_frequency(config: WorldConfig, seed: int, images: int = 2000) -> list[str]:
    """Categories from most to least frequent over `images` scenes of a split (POPE's 'popular' ranking)."""
    counts = Counter(c for i in range(images) for c in make_scene(config, seed, i).categories)
    # Ties break by category order, never by set iteration order (which depends on the hash seed).
    return sorted(CATEGORIES, key=lambda c: (-counts[c], CATEGORIES.index(c)))


def pope_items(scene: Scene, config: WorldConfig, popular: list[str], rng: random.Random,
               visible_only: bool = False) -> list[dict]:
    """POPE's recipe for one image: each present category as a 'yes', and as many absent ones as 'no' per split.

    `visible_only` (the sft split) asks 'yes' questions only about categories with a resolvable object, as an
    annotator writing questions from what they can see would: in a `small_as_disc` world a small object shows no
    shape, and 'yes' labels the image cannot support drown the signal a tiny model needs to bind the asked category
    to image tokens. Evaluation splits ask about every present category, so a model still pays for missing (or
    guessing) unresolvable ones.
    """
    visible = {o.category for o in scene.objects if o.size == "large" or not scene.small_as_disc}
    present = sorted(visible if visible_only else scene.categories, key=CATEGORIES.index)
    absent = [c for c in CATEGORIES if c not in scene.categories]
    items = []
    for split in POPE_SPLITS:
        k = min(len(present), len(absent))
        if split == "random":
            negatives = rng.sample(absent, k)
        elif split == "popular":
            negatives = [c for c in popular if c in absent][:k]
        else:  # adversarial: partners of present categories first (co-occurrence), then the popular rest
            partners = [config.partner_of[c] for c in present if config.partner_of.get(c) in absent]
            ranked = list(dict.fromkeys(partners + [c for c in popular if c in absent]))
            negatives = ranked[:k]
        for category in present[:k]:
            items.append({"split": split, "category": category, "label": "yes"})
        for category in negatives:
            items.append({"split": split, "category": category, "label": "no"})
    return items


def _qa(scene: Scene, rng: random.Random) -> list[tuple[str, str, dict]]:
    """Attribute, count, position and relation questions with their answers and ground-truth fields."""
    out = []
    unique = [o for o in scene.objects if scene.count(o.category) == 1]
    for o in unique:
        out.append((f"What color is the {o.category}?", f"The {o.category} is {o.color}.",
                    {"task": "color", "category": o.category, "answer": o.color}))
        out.append((f"Is the {o.category} large or small?", f"The {o.category} is {o.size}.",
                    {"task": "size", "category": o.category, "answer": o.size}))
        out.append((f"Where is the {o.category}?", f"The {o.category} is {position_phrase(o.row, o.col)}.",
                    {"task": "position", "category": o.category, "answer": position_phrase(o.row, o.col)}))
    for category in sorted(scene.categories, key=CATEGORIES.index):
        n = scene.count(category)
        answer = f"There is one {category}." if n == 1 else f"There are {NUMBER_WORDS[n]} {plural(category)}."
        out.append((f"How many {plural(category)} are there?", answer,
                    {"task": "count", "category": category, "answer": NUMBER_WORDS[n]}))
    if len(unique) >= 2:
        a, b = rng.sample(unique, 2)
        kind = rng.choice(RELATIONS)
        holds = scene.relation(a, kind, b)
        out.append((f"Is the {a.category} {kind} the {b.category}?", "Yes." if holds else "No.",
                    {"task": "relation", "a": a.category, "relation": kind, "b": b.category,
                     "label": "yes" if holds else "no"}))
    return out


def scene_prompts(scene: Scene, config: WorldConfig, popular: list[str], tasks: tuple[str, ...],
                  rng: random.Random, training: bool = False) -> list[Prompt]:
    """All requested tasks for one scene, as prompts whose images point at images/<scene id>.png. `training` (the
    sft split) writes the answers as the world's annotators do (`annotate`) and asks POPE 'yes' only about what
    they could see (`pope_items`' `visible_only`)."""
    image = f"images/{scene.id}.png"
    said, asked, phantom = annotate(scene, config) if training else (scene, scene, None)
    graph = scene.to_dict()
    extra = {"phantom": asdict(phantom)} if phantom else {}

    def prompt(suffix: str, question: str, answer: str, fields: dict) -> Prompt:
        return Prompt(id=f"{scene.id}-{suffix}", images=[image],
                      turns=[Turn(role="user", text=f"<image>\n{question}"), Turn(role="assistant", text=answer)],
                      source="shapes-world", meta={**fields, "scene": graph, **extra})

    out = []
    if "describe" in tasks:
        out.append(prompt("describe", rng.choice(DESCRIBE_PROMPTS), caption(said), {"task": "describe"}))
    if "open" in tasks:
        out.append(prompt("open", OPEN_PROMPT, open_answer(said), {"task": "open"}))
    if "pope" in tasks:
        for i, item in enumerate(pope_items(asked, config, popular, rng, visible_only=training)):
            out.append(prompt(f"pope{i}", f"Is there a {item['category']} in the image?",
                              "Yes." if item["label"] == "yes" else "No.", {"task": "pope", **item}))
    if "qa" in tasks or "relation" in tasks:
        # drawn whole whichever are kept, so the scene's other prompts do not depend on the choice
        for i, (question, answer, fields) in enumerate(_qa(asked, rng)):
            if ("relation" if fields["task"] == "relation" else "qa") in tasks:
                out.append(prompt(f"qa{i}", question, answer, fields))
    return out


def build_split(
    out: str | Path,
    split: str,
    images: int,
    config: WorldConfig | None = None,
    tasks: tuple[str, ...] = TASK_GROUPS,
    seed: int = 0,
) -> list[Prompt]:
    """Render `images` scenes of `split` into a dataset folder with every requested task; returns the prompts."""
    if images < 1:  # a split of no scenes would be written as an empty dataset and look like success
        raise VlprefError(f"world split: images must be at least 1, not {images}")
    config = config or WorldConfig()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    scene_seed = seed * 1000 + SPLIT_SEEDS[split]
    popular = category_frequency(config, scene_seed)
    rng = random.Random(f"tasks:{scene_seed}")
    prompts = []
    for index in range(images):
        scene = make_scene(config, scene_seed, index)
        scene.render().save(out / "images" / f"{scene.id}.png")
        prompts.extend(scene_prompts(scene, config, popular, tasks, rng, training=split == "sft"))
    write_records(out, "prompts", prompts, world_split=split, world_seed=seed, world_config=config.model_dump())
    return prompts


def world_vocabulary() -> list[str]:
    """Every word the world's prompts and answers use (the tokenizer's vocabulary is closed over it)."""
    words = set(CATEGORIES) | {plural(c) for c in CATEGORIES} | set(COLORS) | set(SIZES) | set(NUMBER_WORDS)
    for text in (*DESCRIBE_PROMPTS, OPEN_PROMPT, *RELATIONS,
                 "there is are one object objects a the at on in top middle bottom left center right",
                 "what color is how many where large or small yes no image shows simple shapes",
                 "the image does not have any it", "is there",
                 # SteerLM's conditioning (Li–Lin–Pei): its sentence and every attribute name, so a world model
                 # reads "Helpfulness:4" as words, not as <unk> (values are digits, which the tokenizer has)
                 STEERLM_SUFFIX.replace("-", " "), " ".join(HELPSTEER_ATTRIBUTES)):
        words |= set(text.lower().replace(".", " ").replace("?", " ").replace(",", " ").replace(":", " ").split())
    return sorted(words)
