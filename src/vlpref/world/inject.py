"""POVID's hallucination injection, done exactly from the scene graph.

    >>> injector = WorldInjector(seed=0)
    >>> injector.inject(prompt, prompt.reference, kind="object")
    Injection(text='There are three objects. There is a small red circle at the top left. There is a large blue
    square on the right. ...', kind='object', detail='added absent square (co-occurs with a present shape)')

POVID (methods.md §4.1) asks GPT-4V to rewrite a correct answer so that it stays plausible, keeps most of the text,
and injects (a) a co-occurring absent object, (b) a wrong attribute, count or position, (c) a false relation; for
yes/no items the answer is flipped. Here the scene graph makes each rewrite exact:
- `object`: an absent category is added, preferring the co-occurrence partner of a present category (the world's
  statistics, as POVID picks plausible co-occurring objects), in a free cell: a ground-truth description is
  rewritten as the description of the scene with that object (total and inventory counting it, reading order);
  other text gets one sentence inserted and its stated total raised;
- `attribute`: one stated colour, size, count or position is changed to a false one;
- `relation`: a false relation between two present objects is added;
- `flip`: a yes/no answer is inverted.

`inject(prompt, answer, kind=None)` picks a kind the answer allows. The same interface is what a judge-backed
injector (an LLM rewriting free text) offers, so POVID's pipeline runs on either.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from vlpref.data.schema import Prompt
from vlpref.world.parse import parse_claims, sentences_of, words_of
from vlpref.world.scenes import (
    CATEGORIES,
    COLORS,
    NUMBER_WORDS,
    SIZES,
    Scene,
    SceneObject,
    WorldConfig,
    position_phrase,
)
from vlpref.world.tasks import RELATIONS, caption, open_answer

KINDS = ("object", "attribute", "relation")


@dataclass(frozen=True)
class Injection:
    text: str
    kind: str
    detail: str


class WorldInjector:
    """Rewrites correct answers into hallucinated ones; deterministic in `seed` and the call sequence."""

    def __init__(self, seed: int = 0, world: WorldConfig | None = None):
        self.rng = random.Random(f"inject:{seed}")
        self.world = world or WorldConfig()

    def inject(self, prompt: Prompt, answer: str, kind: str | None = None) -> Injection:
        scene = Scene.from_dict(prompt.meta["scene"])
        if prompt.meta.get("task") in ("pope", "relation") or words_of(answer)[:1] in (["yes"], ["no"]):
            return self._flip(answer)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown injection kind {kind!r}; choose one of {', '.join(KINDS)} (yes/no answers flip)")
        kinds = [kind] if kind else list(KINDS)
        self.rng.shuffle(kinds)
        for k in kinds:
            result = {"object": self._object, "attribute": self._attribute, "relation": self._relation}[k](
                scene, answer)
            if result is not None:
                return result
        raise ValueError(f"prompt {prompt.id}: cannot inject {kind or 'any'} hallucination into {answer!r}")

    # -- kinds ---------------------------------------------------------------------------------------------------

    def _flip(self, answer: str) -> Injection:
        said = words_of(answer)[:1]
        text = "No." if said == ["yes"] else "Yes."
        return Injection(text, "flip", f"answer flipped from {answer!r}")

    def _object(self, scene: Scene, answer: str) -> Injection | None:
        absent = [c for c in CATEGORIES if c not in scene.categories]
        free = [(r, c) for r in range(3) for c in range(3) if all((o.row, o.col) != (r, c) for o in scene.objects)]
        if not absent or not free:
            return None
        partner_of = self.world.partner_of
        partners = [partner_of[c] for c in sorted(scene.categories) if partner_of.get(c) in absent]
        category = self.rng.choice(partners) if partners else self.rng.choice(absent)
        row, col = self.rng.choice(free)
        size, color = self.rng.choice(SIZES), self.rng.choice(list(COLORS))
        why = f"added absent {category}" + (" (co-occurs with a present shape)" if category in partners else "")
        # A ground-truth description is rewritten as one of the scene with the object in it, so that it stays
        # plausible as POVID asks: its stated total ("There are four objects.") and inventory count the new object
        # and the new sentence sits in reading order. Inserting a sentence alone leaves "four objects" followed by
        # five, a rejection no model would write and that a preference learns nothing from.
        phantom = SceneObject(category=category, color=color, size=size, row=row, col=col)
        believed = replace(scene, objects=tuple(sorted((*scene.objects, phantom), key=lambda o: (o.row, o.col))))
        for render in (caption, open_answer):
            if answer.strip() == render(scene):
                return Injection(render(believed), "object", why)
        sentence = f"There is a {size} {color} {category} {position_phrase(row, col)}."
        parts = [s.strip() + "." for s in sentences_of(answer)]
        at = self.rng.randint(1, len(parts)) if parts else 0  # after the first sentence, keep most text intact
        parts.insert(at, sentence)
        return Injection(_count_one_more(" ".join(parts)), "object", why)

    def _attribute(self, scene: Scene, answer: str) -> Injection | None:
        """Change one stated colour / size / count / position of a present category into a false one, editing
        exactly that mention's words (the noun phrase before the category, the predicate after "<category> is", or
        the position phrase after the noun)."""
        claims = parse_claims(answer)
        options = []
        for m in claims.objects:
            if m.category not in scene.categories:
                continue
            held = [o for o in scene.objects if o.category == m.category]
            if m.color:
                options += [("color", m, c) for c in COLORS if all(o.color != c for o in held)]
            if m.size:
                options += [("size", m, s) for s in SIZES if all(o.size != s for o in held)]
            if m.row is not None and m.col is not None:
                options += [("position", m, (r, c)) for r in range(3) for c in range(3)
                            if all((o.row, o.col) != (r, c) for o in held)]
            if m.count is not None:
                truth = scene.count(m.category, m.color)
                options += [("count", m, n) for n in (m.count + 1, m.count + 2, m.count - 1)
                            if 0 < n < len(NUMBER_WORDS) and n != truth]
        self.rng.shuffle(options)
        sentences = sentences_of(answer)
        for what, mention, new in options:
            target = sentences[mention.sentence]
            rewritten = _rewrite(target, what, mention, new)
            if rewritten is not None and rewritten != target:
                said = position_phrase(*new) if what == "position" else new
                return Injection(answer.replace(target, rewritten, 1), "attribute",
                                 f"{mention.category}: {what} {said}")
        return None

    def _relation(self, scene: Scene, answer: str) -> Injection | None:
        """Append a relation between two present categories that no pair of their objects satisfies."""
        categories = sorted(scene.categories, key=CATEGORIES.index)
        options = []
        for a in categories:
            for b in categories:
                if a == b:
                    continue
                for kind in RELATIONS:
                    pairs = [(x, y) for x in scene.objects if x.category == a
                             for y in scene.objects if y.category == b]
                    if pairs and not any(scene.relation(x, kind, y) for x, y in pairs):
                        options.append((a, kind, b))
        if not options:
            return None
        a, kind, b = self.rng.choice(options)
        sentence = f"The {a} is {kind} the {b}."
        return Injection(f"{answer.rstrip()} {sentence}", "relation", f"false relation: {a} {kind} {b}")


def _count_one_more(text: str) -> str:
    """`text` with its stated total of objects ("There are four objects.", "There is one object.") one higher, if
    it states one."""
    def more(match: re.Match) -> str:
        said = match.group("n") or "one"
        n = NUMBER_WORDS.index(said.lower()) + 1 if said.lower() in NUMBER_WORDS else None
        return match.group(0) if n is None or n >= len(NUMBER_WORDS) else f"There are {NUMBER_WORDS[n]} objects"
    return re.sub(r"There (?:is one object|are (?P<n>\w+) objects)\b", more, text, count=1, flags=re.IGNORECASE)


def _plural(category: str) -> str:
    return category + ("es" if category.endswith(("s", "x")) else "s")


def _rewrite(sentence: str, what: str, mention, new) -> str | None:
    """`sentence` with the colour, size, count or position of `mention` replaced by `new`, or None if its words are
    not found.

    Only the words tied to the mention's own noun are touched: a modifier within two words before the category
    noun, or a colour/size in "<category> is ...". A count change also fixes the noun's number ("one circle" ->
    "two circles") and "There is" -> "There are" when the noun phrase is that sentence's subject.
    """
    noun = rf"(?P<noun>{mention.category}|{_plural(mention.category)})\b"
    if what == "count":
        number = rf"(?P<num>\b(?:{NUMBER_WORDS[mention.count]}|{mention.count})\b)"
        match = re.search(rf"{number}(?P<mid>(?:\s+\w+){{0,2}}?\s+){noun}", sentence, flags=re.IGNORECASE)
        if match is None:
            return None
        form = mention.category if new == 1 else _plural(mention.category)
        head = sentence[:match.start()]
        if head.strip().lower() in ("there is", "there are"):  # the noun phrase is the subject: agree the verb
            head = re.sub(r"There (is|are)", "There are" if new > 1 else "There is", head, flags=re.IGNORECASE)
        return head + NUMBER_WORDS[new] + match.group("mid") + form + sentence[match.end():]
    if what == "position":
        said = position_phrase(mention.row, mention.col)
        match = re.search(rf"{noun}(?P<mid>.*?)\b(?P<old>{said})\b", sentence, flags=re.IGNORECASE)
        if match is None:
            return None
        return sentence[:match.start("old")] + position_phrase(*new) + sentence[match.end("old"):]
    old = mention.color if what == "color" else mention.size
    before = re.search(rf"\b{old}\b(?=(?:\s+\w+){{0,2}}?\s+{noun})", sentence, flags=re.IGNORECASE)
    if before is not None:
        return sentence[:before.start()] + str(new) + sentence[before.end():]
    after = re.search(rf"{noun}\s+(?:is|are)\s+(?:\w+\s+)?(?P<old>{old})\b", sentence, flags=re.IGNORECASE)
    if after is not None:
        return sentence[:after.start("old")] + str(new) + sentence[after.end("old"):]
    return None

