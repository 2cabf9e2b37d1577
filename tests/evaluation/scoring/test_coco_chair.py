"""CHAIR on COCO by hand: the official word extraction's rules and quirks, ground truth from instances + captions,
and the formulas, with a stand-in tokenizer and normaliser (NLTK's data cannot be downloaded here)."""

from __future__ import annotations

import re

import pytest

from vlpref.evaluation.scoring.coco_chair import CocoWords, coco_chair, double_words, nltk_tools, synonyms

PLURALS = {"dogs": "dog", "cats": "cat", "people": "people", "glasses": "glas", "men": "man", "buses": "bus"}


def words() -> CocoWords:
    # stands in for nltk.word_tokenize + pattern's singularize on the words these captions use
    return CocoWords(lambda text: re.findall(r"\w+|[^\w\s]", text), lambda tokens: [PLURALS.get(t, t) for t in tokens])


def test_synonym_table_as_the_official_scorer_parses_it():
    table = synonyms()
    assert len(set(table.values())) == 80 and table["puppy"] == "dog" and table["motorbike"] == "motorcycle"
    assert " motor bike" in table and "motor bike" not in table      # the double space in the official file
    assert " cheesecake" in table and "cheesecake" not in table
    assert "bison" in table and "chesterfield" in table               # trailing spaces are stripped
    assert double_words()["wine glas"] == "wine glass" and double_words()["baby cub"] == "cub"


@pytest.mark.parametrize("caption, expected", [
    ("Two dogs and a puppy.", ["dog", "dog"]),                         # each mention counts, duplicates too
    ("A baby elephant next to an adult giraffe.", ["elephant", "giraffe"]),  # not 'person'
    ("A passenger train.", ["train"]),
    ("A man on a motor bike.", ["person"]),                            # 'motor bike' is merged, then matches nothing
    ("A motorbike and a train track.", ["motorcycle"]),               # 'train track' hides the train
    ("The seat of the toilet.", ["toilet"]),                           # a seat next to a toilet is no chair
    ("A chair and a stool.", ["chair", "chair"]),
    ("Two wine glasses.", ["wine glass"]),                             # singularized 'glas' is merged back
    ("His iPhone, a cheesecake.", []),                                # lower-cased 'iphone' and ' cheesecake' quirks
    ("A bow tie.", ["tie"]),
])
def test_mentions(caption, expected):
    assert words().mentions(caption) == expected


def test_truth_and_scores_by_hand():
    w = words()
    instances = [{"categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
                  "annotations": [{"image_id": 10, "category_id": 18}, {"image_id": 10, "category_id": 18},
                                  {"image_id": 20, "category_id": 1}, {"image_id": 99, "category_id": 1}]}]
    captions = [{"annotations": [{"image_id": 10, "caption": "A dog on a couch."},
                                 {"image_id": 20, "caption": "A man with a frisbee."}]}]
    truth = w.truth(instances, captions, [10, 20, 30])
    assert truth == {10: {"dog", "couch"}, 20: {"person", "frisbee"}, 30: set()}  # 99 was not asked for
    generated = [(10, "A dog and a cat on a sofa."),       # dog ok, cat hallucinated, sofa -> couch ok
                 (20, "A man and two buses."),              # person ok, bus hallucinated
                 (30, "An empty room.")]                    # no mention
    got = coco_chair(w, generated, truth)
    assert got["chair_i"] == pytest.approx(2 / 5)         # cat and bus, of dog, cat, couch, person, bus
    assert got["chair_s"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx((2 + 1) / (2 + 2 + 0))
    # words after merging: 'a dog and a cat on a sofa .' = 9, 'a man and two bus .' = 6, 'an empty room .' = 4
    assert got["length"] == pytest.approx((9 + 6 + 4) / 3)
    assert got["hallucinated"] == [["cat"], ["bus"], []]
    with pytest.raises(ValueError, match=r"no ground truth for image id\(s\) \[40\]"):
        coco_chair(w, [(40, "A dog.")], truth)


def test_missing_nltk_names_what_to_install():
    with pytest.raises((RuntimeError, ValueError), match="nltk|NLTK|variant"):
        nltk_tools("lemmatize")
    with pytest.raises(ValueError, match="variant must be one of"):
        nltk_tools("stem")
