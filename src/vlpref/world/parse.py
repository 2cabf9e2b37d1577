"""Free text -> claims about a scene. Deterministic, because the world's vocabulary is closed.

    >>> claims = parse_claims("There are two red circles at the top left. The star is left of the square.")
    >>> claims.mentions[0]
    Mention(category='circle', color='red', size=None, count=2, row=0, col=0, sentence=0)
    >>> claims.relations[0]
    RelationClaim(a='star', relation='left of', b='square', negated=False, sentence=1)

Rules (the whole parser):
1. Lower-case; split into sentences at '.', '!', '?', ';' and into words at anything not a letter or digit.
2. Every category word (singular or plural) is one object **mention** (duplicates count, as in CHAIR).
3. A mention's colour, size and count come from its own noun phrase: the run of articles, colour, size and number
   words right before it ("two small red circles"). A number written as a word or digits counts; "a" does not.
4. A mention's position is the first position phrase after it in the same sentence and before the next category
   word: "at the top left", "on the left", "at the bottom", "in the center" (see `scenes.position_phrase`). A bare
   "top"/"bottom" fixes the row, "left"/"right" the column, "center" alone the middle cell, "middle" the row.
   Words in a relation phrase ("left of", "next to") are not positions.
   A colour or size within 3 words after "<noun> is/are" also belongs to it ("the circle is red").
5. A **relation** claim is a sentence with two mentions joined by "left of", "right of", "above", "below" or
   "next to"; "not" anywhere in the sentence negates it. "right of"/"below" are stored as the inverse claim.
6. Negated existence marks the mention `negated`: "no X", "not a X", "isn't a X", "does not have a X", "zero X",
   and "no X or Y" (the denial carries across or/and/nor). A negated mention is no object claim (CHAIR ignores it),
   and relations involving one are not claims either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vlpref.world.scenes import CATEGORIES, COLORS, COLS, NUMBER_WORDS, ROWS, SIZES

SINGULAR = {c: c for c in CATEGORIES} | {c + ("es" if c.endswith(("s", "x")) else "s"): c for c in CATEGORIES}
NUMBERS = {w: i for i, w in enumerate(NUMBER_WORDS)} | {str(i): i for i in range(10)}
RELATION_WORDS = {("left", "of"): "left of", ("right", "of"): "right of", ("next", "to"): "next to"}
SINGLE_RELATIONS = {"above": "above", "below": "below"}
INVERSE = {"right of": "left of", "below": "above"}
ARTICLES = {"a", "an", "the", "any", "some"}
NEGATORS = {"no", "not", "nor", "t"}  # "there is no star", "there is not a star", "there isn't a star" (isn, t)
CONJUNCTIONS = {"or", "and", "nor"}


@dataclass(frozen=True)
class Mention:
    category: str
    color: str | None = None
    size: str | None = None
    count: int | None = None
    row: int | None = None
    col: int | None = None
    sentence: int = 0
    negated: bool = False


@dataclass(frozen=True)
class RelationClaim:
    a: str
    relation: str  # "left of", "above" or "next to"
    b: str
    negated: bool = False
    sentence: int = 0


@dataclass
class Claims:
    mentions: list[Mention] = field(default_factory=list)
    relations: list[RelationClaim] = field(default_factory=list)

    @property
    def objects(self) -> list[Mention]:
        """Mentions that assert an object is there (not negated): what CHAIR counts."""
        return [m for m in self.mentions if not m.negated]


def words_of(sentence: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+", sentence.lower())


def _modifier_run(words: list[str], i: int, previous: int) -> int:
    """Start of the run of articles, colours, sizes and numbers right before the noun at i (its noun phrase)."""
    j = i
    while j - 1 > previous and (words[j - 1] in COLORS or words[j - 1] in SIZES or _number(words[j - 1]) is not None):
        j -= 1
    if j - 1 > previous and words[j - 1] in ARTICLES:  # an article opens the noun phrase: nothing before it belongs
        j -= 1
    return j


def _number(word: str) -> int | None:
    return int(word) if word.isdigit() else NUMBERS.get(word)


def _negated(words: list[str], start: int, previous_negated: bool, previous: int) -> bool:
    """Is the noun phrase starting at `start` denied? 'no star', 'not a star', "isn't a star", 'does not have a
    star', and 'no stars or hearts' (a denial carries across or/and/nor)."""
    run = words[start:]
    if "no" in run[:3]:
        return True
    before = words[start - 1] if start - 1 > previous else ""
    if before in NEGATORS:
        return True
    if before in ("have", "has", "contain", "contains", "show", "shows") and start - 2 > previous \
            and words[start - 2] in NEGATORS:
        return True
    return previous_negated and before in CONJUNCTIONS


def sentences_of(text: str) -> list[str]:
    return [s for s in re.split(r"[.!?;]", text) if s.strip()]


def _position(words: list[str], start: int, stop: int) -> tuple[int | None, int | None]:
    row = col = None
    i = start
    while i < stop:
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if (w, nxt) in RELATION_WORDS or w in SINGLE_RELATIONS:
            break  # "left of the square" is a relation, not this mention's position
        if w in ("top", "bottom") or (w == "middle" and row is None):
            row = ROWS.index(w)
        elif w in ("left", "right"):
            col = COLS.index(w)
        elif w == "center":
            col = 1
            row = 1 if row is None else row
        elif row is not None or col is not None:
            if w not in ("the", "at", "on", "in"):
                break
        i += 1
    if col is not None and row is None:
        row = 1  # "on the left" is the middle row (position_phrase writes the middle row that way)
    if row is not None and col is None:
        col = 1  # "at the top" is the centre column
    return row, col


def parse_claims(text: str) -> Claims:
    claims = Claims()
    for s_index, sentence in enumerate(sentences_of(text)):
        words = words_of(sentence)
        cats = [i for i, w in enumerate(words) if w in SINGULAR]
        sentence_mentions = []
        for k, i in enumerate(cats):
            previous = cats[k - 1] if k > 0 else -1
            following = cats[k + 1] if k + 1 < len(cats) else len(words)
            start = _modifier_run(words, i, previous)
            before = words[start:i]  # only this noun's own modifiers: "the star is red and the circle" -> []
            color = next((w for w in reversed(before) if w in COLORS), None)
            size = next((w for w in reversed(before) if w in SIZES), None)
            if i + 1 < following and words[i + 1] in ("is", "are"):  # predicate: "the circle is large and red"
                after = words[i + 2:min(following, i + 5)]
                color = color or next((w for w in after if w in COLORS), None)
                size = size or next((w for w in after if w in SIZES), None)
            count = next((_number(w) for w in reversed(before) if _number(w) is not None), None)
            previous_negated = bool(sentence_mentions) and sentence_mentions[-1][1].negated
            negated = count == 0 or (_negated(words, start, previous_negated, previous)
                                     and not (count or 0) > 0)
            row, col = _position(words, i + 1, following)
            mention = Mention(category=SINGULAR[words[i]], color=color, size=size, count=count, row=row, col=col,
                              sentence=s_index, negated=negated)
            sentence_mentions.append((i, mention))
        claims.mentions.extend(m for _, m in sentence_mentions)
        # relations: "<mention> ... left of ... <mention>"
        for (i, a), (j, b) in zip(sentence_mentions, sentence_mentions[1:], strict=False):
            between = words[i + 1:j]
            relation = None
            for t in range(len(between)):
                pair = (between[t], between[t + 1]) if t + 1 < len(between) else None
                if pair in RELATION_WORDS:
                    relation = RELATION_WORDS[pair]
                elif between[t] in SINGLE_RELATIONS:
                    relation = SINGLE_RELATIONS[between[t]]
                if relation:
                    break
            if relation is None or a.negated or b.negated:  # "there is no star next to the circle" asserts nothing
                continue
            negated = "not" in words
            if relation in INVERSE:
                claims.relations.append(RelationClaim(b.category, INVERSE[relation], a.category, negated, s_index))
            else:
                claims.relations.append(RelationClaim(a.category, relation, b.category, negated, s_index))
    return claims
