"""CHAIR on COCO (Rohrbach et al. 2018): object mentions extracted as the official scorers extract them, in both
published variants (benchmarks.md §6).

    >>> words = CocoWords(tokenize=str.split, normalize=lambda tokens: [t.rstrip("s") for t in tokens])
    >>> words.mentions("a baby cat on a toilet seat near two dogs")   # baby cat -> cat; toilet seat -> toilet
    ['cat', 'toilet', 'dog']
    >>> words.mentions("a kitten by the train track")                 # a train track is not a train
    ['cat']

Variants (numbers are comparable only within one; results name the variant):
- `singularize`: the original scorer (LisaAnne/Hallucination `utils/chair.py`) and Maxlinn's standalone copy: NLTK's
  word tokenizer over the lower-cased caption, then `pattern.en.singularize` on each token;
- `lemmatize`: OPERA's copy (`shikiw/OPERA chair.py`): NLTK's tokenizer, NLTK's POS tagger, then WordNet's
  lemmatizer with the tag's part of speech (adjective, verb, noun, adverb; anything else as a noun).
Both need NLTK and its data (`punkt`/`punkt_tab`; for `lemmatize` also the perceptron tagger and `wordnet`), and
`singularize` the `pattern` package: `nltk_tools` says what to install when something is missing. The rest of the
procedure is ours and exact:
1. two-word expressions are merged left to right (`DOUBLE_WORDS`): COCO's double words stay themselves, 'baby'/'adult'
   + animal and 'passenger' + jet/train become the animal or vehicle, 'bow tie' -> tie, 'toilet seat' -> toilet,
   'wine glas' (a singularized 'wine glass') -> wine glass;
2. with both 'toilet' and 'seat' in the caption every 'seat' is dropped (else "the seat of the toilet" names a chair);
3. the words found in the synonym table (`coco_synonyms.txt`, the official 80 lines, quirks kept: ' motor bike' and
   ' cheesecake' carry a leading space and never match; 'motor bike', 'home plate' and 'train track' are merged but
   are no objects, so they suppress their parts) are mapped to their category's first word.
Ground truth per image (`CocoWords.truth`) is the union of the instance annotations' categories and the words
extracted the same way from the 5 reference captions. Formulas: `vlpref.evaluation.scoring.chair.chair` (CHAIR_s,
CHAIR_i with duplicate mentions counted, recall); `length` is the mean number of words after merging (OPERA's Len).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from vlpref.evaluation.scoring.chair import chair

VARIANTS = ("singularize", "lemmatize")
_SYNONYMS = Path(__file__).with_name("coco_synonyms.txt")

COCO_DOUBLE_WORDS = ("motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                     "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
                     "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
                     "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
                     "stove top oven", "home plate", "train track")
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
VEHICLES = ("jet", "train")


def double_words() -> dict[str, str]:
    table = {w: w for w in COCO_DOUBLE_WORDS}
    for animal in ANIMALS:  # 'baby bird' is a bird, not a person
        table[f"baby {animal}"] = table[f"adult {animal}"] = animal
    for vehicle in VEHICLES:  # 'passenger jet' is a jet, not a person
        table[f"passenger {vehicle}"] = vehicle
    table.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return table


def synonyms() -> dict[str, str]:
    """Every synonym -> its category's first word, parsed as the official scorer parses the file."""
    inverse = {}
    for line in _SYNONYMS.read_text(encoding="utf-8").splitlines():
        names = line.strip().split(", ")
        for name in names:
            inverse[name] = names[0]
    return inverse


class CocoWords:
    """Object mentions of captions. `tokenize(text) -> tokens`; `normalize(tokens) -> tokens` (one per token)."""

    def __init__(self, tokenize: Callable[[str], list[str]], normalize: Callable[[list[str]], list[str]]):
        self.tokenize, self.normalize = tokenize, normalize
        self.doubles, self.inverse = double_words(), synonyms()

    def words(self, caption: str) -> list[str]:
        """The caption's words after normalising and merging double words (OPERA's Len counts these)."""
        tokens = self.normalize(self.tokenize(caption.lower()))
        merged, i = [], 0
        while i < len(tokens):
            pair = " ".join(tokens[i : i + 2])
            if pair in self.doubles:
                merged.append(self.doubles[pair])
                i += 2
            else:
                merged.append(tokens[i])
                i += 1
        return merged

    def mentions(self, caption: str) -> list[str]:
        """Canonical COCO object words mentioned, in order, duplicates kept."""
        words = self.words(caption)
        if "toilet" in words and "seat" in words:
            words = [w for w in words if w != "seat"]
        return [self.inverse[w] for w in words if w in self.inverse]

    def truth(self, instances: Iterable[Mapping], captions: Iterable[Mapping], image_ids: Iterable[int]
              ) -> dict[int, set[str]]:
        """Ground-truth objects of each image in `image_ids`, from COCO's `instances_*2014.json` and
        `captions_*2014.json` contents (train and val together: the ids are disjoint). Images without any
        annotation get an empty set, as in the official scorer."""
        wanted = set(image_ids)
        objects: dict[int, set[str]] = defaultdict(set)
        for data in instances:
            names = {c["id"]: c["name"] for c in data["categories"]}
            for a in data["annotations"]:
                if a["image_id"] in wanted:
                    objects[a["image_id"]].add(self.inverse[names[a["category_id"]]])
        for data in captions:
            for a in data["annotations"]:
                if a["image_id"] in wanted:
                    objects[a["image_id"]].update(self.mentions(a["caption"]))
        return {i: objects.get(i, set()) for i in wanted}


def coco_chair(words: CocoWords, captions: Sequence[tuple[int, str]], truth: Mapping[int, set[str]]) -> dict:
    """CHAIR_s, CHAIR_i, recall and length of generated `captions` ((image_id, text) pairs), plus per caption the
    hallucinated words (for drill-down)."""
    missing = sorted({i for i, _ in captions} - set(truth))
    if missing:
        raise ValueError(f"no ground truth for image id(s) {missing[:5]}")
    mentions = [words.mentions(text) for _, text in captions]
    result = chair(mentions, [truth[i] for i, _ in captions])
    result["length"] = sum(len(words.words(text)) for _, text in captions) / len(captions) if captions else 0.0
    result["hallucinated"] = [sorted({m for m in found if m not in truth[i]})
                              for (i, _), found in zip(captions, mentions, strict=True)]
    return result


def nltk_tools(variant: str) -> CocoWords:
    """The official word extraction of `variant`, built from NLTK (and pattern for `singularize`). Raises
    RuntimeError naming what to install when a package or NLTK data is missing."""
    if variant not in VARIANTS:
        raise ValueError(f"CHAIR variant must be one of {VARIANTS}, not {variant!r}")
    try:
        import nltk
    except ImportError:
        raise RuntimeError("CHAIR on COCO needs NLTK: pip install nltk") from None

    def need(*resources: str) -> None:
        for resource in resources:
            try:
                nltk.data.find(resource)
            except LookupError:
                name = resource.rsplit("/", 1)[-1]
                raise RuntimeError(f"CHAIR ({variant}) needs NLTK data {name!r}: "
                                   f"python -m nltk.downloader {name}") from None

    need("tokenizers/punkt_tab")
    if variant == "singularize":
        try:
            from pattern.en import singularize
        except ImportError:
            raise RuntimeError("CHAIR (singularize) needs the `pattern` package (pattern.en.singularize), as the "
                               "original scorer; or use the lemmatize variant") from None
        return CocoWords(nltk.word_tokenize, lambda tokens: [singularize(t) for t in tokens])

    need("taggers/averaged_perceptron_tagger_eng", "corpora/wordnet")
    from nltk.corpus import wordnet
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()
    pos = {"J": wordnet.ADJ, "V": wordnet.VERB, "N": wordnet.NOUN, "R": wordnet.ADV}

    def lemmatize(tokens: list[str]) -> list[str]:
        return [lemmatizer.lemmatize(t, pos=pos.get(tag[:1], wordnet.NOUN)) for t, tag in nltk.pos_tag(tokens)]

    return CocoWords(nltk.word_tokenize, lemmatize)
