"""Every claim a response makes about its scene, checked against the scene graph: the facts both the world's metrics
(`vlpref.world.metrics`) and its oracle judge (`vlpref.world.judge`) are computed from.

    >>> facts = check_response(scene, "There is a red circle at the top left. There is a blue star.")
    >>> facts.hallucinated_objects, facts.wrong_attributes
    (['star'], ['circle: color red'])

What counts (claims come from `parse.parse_claims`):
- object: a mention (not negated) of a category absent from the scene; the CHAIR unit. Each is also classified by
  its evidence (`evidence_absent`): *present* when the pixels settle that no such object is there (the model saw
  and still said it: the reducible kind preference methods target), *absent* when an object the image cannot
  resolve could be it (a small object drawn as a bare disc, where the mention's colour and cell allow);
- attribute: a stated colour or size that no object of that (present) category has;
- count: a stated number that differs from the scene's count of that category (of that colour, if one is given);
- position: a stated cell holding no object of that category (and colour);
- relation: a stated relation (or its negation) that no pair of objects of the two categories makes true;
- coverage: the share of the scene's categories the response mentions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from vlpref.world.parse import Mention, parse_claims
from vlpref.world.scenes import COLS, ROWS, Scene


@dataclass
class Facts:
    """What one response got right and wrong about its scene."""

    mentions: list[str] = field(default_factory=list)  # categories mentioned as present, duplicates kept
    hallucinated_objects: list[str] = field(default_factory=list)
    unresolvable: list[str] = field(default_factory=list)  # the hallucinated mentions whose evidence is absent
    attributes: int = 0
    wrong_attributes: list[str] = field(default_factory=list)
    counts: int = 0
    wrong_counts: list[str] = field(default_factory=list)
    positions: int = 0
    wrong_positions: list[str] = field(default_factory=list)
    relations: int = 0
    wrong_relations: list[str] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)
    wrong_answers: list[str] = field(default_factory=list)  # set by the judge for wrong answers to questions

    @property
    def errors(self) -> list[str]:
        """Every hallucinated fact, as short phrases (for rationales)."""
        return ([f"absent {c}" for c in self.hallucinated_objects] + self.wrong_attributes + self.wrong_counts
                + self.wrong_positions + self.wrong_relations + self.wrong_answers)

    @property
    def correct(self) -> int:
        """Number of correct fact claims (objects, attributes, counts, positions, relations)."""
        return (len(self.mentions) - len(self.hallucinated_objects) + self.attributes - len(self.wrong_attributes)
                + self.counts - len(self.wrong_counts) + self.positions - len(self.wrong_positions)
                + self.relations - len(self.wrong_relations))

    @property
    def coverage(self) -> float:
        total = len(self.covered) + len(self.missed)
        return len(self.covered) / total if total else 1.0


def evidence_absent(scene: Scene, mention: Mention) -> bool:
    """Whether the image leaves a (hallucinated) object mention open: some object drawn too small to show its shape
    (a disc) sits where the mention puts it (its cell, if it names one) with the colour it names (if any). Anywhere
    else the pixels settle it: an empty cell, a resolvable shape of another category, a disc of another colour."""
    if not scene.small_as_disc:
        return False
    return any(o.size == "small" and (mention.row is None or (o.row, o.col) == (mention.row, mention.col))
               and (mention.color is None or o.color == mention.color) for o in scene.objects)


def partner_mentions(scene: Scene, facts: Facts, partner_of: dict[str, str]) -> list[str]:
    """The hallucinated mentions that name the co-occurrence partner of a present category: the error the sft
    split's annotators taught world-base (its prior), as against any other absent category.

        >>> scene = Scene(id="s", objects=(SceneObject("circle", "red", "large", 0, 0),))
        >>> facts = check_response(scene, "There is a circle. There is a square. There is a star.")
        >>> partner_mentions(scene, facts, WorldConfig().partner_of)  # the star is absent but no partner
        ['square']
    """
    partners = {partner_of[c] for c in scene.categories if c in partner_of}
    return [c for c in facts.hallucinated_objects if c in partners]


def check_response(scene: Scene, text: str) -> Facts:
    claims = parse_claims(text)
    facts = Facts()
    present = scene.categories
    for m in claims.objects:
        facts.mentions.append(m.category)
        if m.category not in present:
            facts.hallucinated_objects.append(m.category)
            if evidence_absent(scene, m):
                facts.unresolvable.append(m.category)
            continue
        of_category = [o for o in scene.objects if o.category == m.category]
        if m.color is not None:
            facts.attributes += 1
            if not any(o.color == m.color for o in of_category):
                facts.wrong_attributes.append(f"{m.category}: color {m.color}")
        if m.size is not None:
            facts.attributes += 1
            if not any(o.size == m.size for o in of_category):
                facts.wrong_attributes.append(f"{m.category}: size {m.size}")
        if m.count is not None:
            facts.counts += 1
            if scene.count(m.category, m.color) != m.count:
                facts.wrong_counts.append(f"{m.category}: count {m.count}")
        if m.row is not None:
            facts.positions += 1
            matching = [o for o in of_category if m.color is None or o.color == m.color]
            if not any((o.row, o.col) == (m.row, m.col) for o in matching):
                facts.wrong_positions.append(f"{m.category}: position {ROWS[m.row]} {COLS[m.col]}")
    for r in claims.relations:
        facts.relations += 1
        pairs = itertools.product([o for o in scene.objects if o.category == r.a],
                                  [o for o in scene.objects if o.category == r.b])
        holds = any(a is not b and scene.relation(a, r.relation, b) for a, b in pairs)
        if holds == r.negated:
            facts.wrong_relations.append(f"{r.a} {'not ' if r.negated else ''}{r.relation} {r.b}")
    facts.covered = present & set(facts.mentions)
    facts.missed = present - facts.covered
    return facts
