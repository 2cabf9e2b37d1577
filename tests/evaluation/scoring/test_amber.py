"""AMBER by hand, on a 19-item fixture in the official layout (3 generative, 16 discriminative).

nouns.json stands in for the NLTK step: the NN* tokens of each generative response, lemmatized, written by hand.
"""

import json
from pathlib import Path

import pytest

from vlpref.evaluation.scoring.amber import (
    amber_discriminative,
    amber_generative,
    amber_score,
    generative_item,
    generative_metrics,
    object_vocabulary,
)

FIXTURES = Path(__file__).parent / "fixtures" / "amber"


def _load(name):
    return json.loads((FIXTURES / name).read_text())


ANNOTATIONS = _load("annotations.json")
RELATION = _load("relation.json")
RESPONSES = _load("responses.json")
NOUNS = {int(k): v for k, v in _load("nouns.json").items()}
SAFE = (FIXTURES / "safe_words.txt").read_text().split("\n")


def test_generative_items_by_hand():
    vocab = object_vocabulary(RELATION)
    assert "front" not in vocab and "cushion" not in vocab and {"puppy", "ground", "light"} <= vocab

    def item(i):
        entry = ANNOTATIONS[i - 1]
        return generative_item(NOUNS[i], entry["truth"], entry["hallu"], RELATION, safe_words=SAFE)

    # 1: truth dog/frisbee/grass, hallu cat/person. 'front' is dropped (not in relation.json) -> 5 kept;
    #    puppy -> dog, disc -> frisbee, lawn -> grass; light is a safe word; tree matches nothing -> hallucinated
    assert item(1) == {"nouns": 5, "hallucinated": 1, "truth_covered": 3, "truth_total": 3, "hallu_covered": 0,
                       "hallu_total": 2}
    # 2: truth car/person, hallu dog/tree. man -> person, car (twice) -> car; puppy -> hallu dog (covered, and
    #    hallucinated); road -> hallucinated
    assert item(2) == {"nouns": 5, "hallucinated": 2, "truth_covered": 2, "truth_total": 2, "hallu_covered": 1,
                       "hallu_total": 2}
    # 3: truth cat/sofa, hallu dog. kitten -> cat; cushion is not in relation.json
    assert item(3) == {"nouns": 1, "hallucinated": 0, "truth_covered": 1, "truth_total": 2, "hallu_covered": 0,
                       "hallu_total": 1}


def test_generative_metrics_by_hand():
    got = amber_generative(NOUNS, ANNOTATIONS, RELATION, safe_words=SAFE)
    # CHAIR = 3 hallucinated / (0.001 + 5+5+1 nouns) = 3/11.001 = 27.27 %
    # Cover = (3+2+1) / (0.001 + 3+2+2) = 6/7.001 = 85.70 %
    # Hal   = 100 - 1 clean response / (0.001 + 3) = 100 - 33.32 = 66.68 %
    # Cog   = (0+1+0) / (0.001 + 2+2+1) = 1/5.001 = 20.00 %
    assert got == {"chair": 27.3, "cover": 85.7, "hal": 66.7, "cog": 20.0, "items": 3}


def test_counters_start_at_a_thousandth():
    one = {"nouns": 1, "hallucinated": 1, "truth_covered": 1, "truth_total": 1, "hallu_covered": 1, "hallu_total": 1}
    # 1/1.001 = 99.90 %, not 100; Hal: no clean response -> 100 - 0 = 100
    assert generative_metrics([one]) == {"chair": 99.9, "cover": 99.9, "hal": 100.0, "cog": 99.9, "items": 1}
    # nothing to score: 0/0.001 = 0 everywhere instead of a division error; Hal = 100 - 0
    assert generative_metrics([]) == {"chair": 0.0, "cover": 0.0, "hal": 100.0, "cog": 0.0, "items": 0}


def test_first_truth_object_listing_a_word_gets_the_credit():
    # 'ground' is associated with both road and grass; associated words are searched before the objects
    # themselves, object by object, so it covers road, the first truth object listing it
    got = generative_item(["ground"], ["road", "grass"], [], RELATION)
    assert got["truth_covered"] == 1 and got["hallucinated"] == 0
    got = generative_item(["ground", "grass"], ["road", "grass"], [], RELATION)
    assert got["truth_covered"] == 2


def test_similarity_hook():
    # 'vehicle' is in relation.json (under car) but car is not in this image's truth
    plain = generative_item(["vehicle"], ["dog"], ["car"], RELATION)
    assert plain == {"nouns": 1, "hallucinated": 1, "truth_covered": 0, "truth_total": 1, "hallu_covered": 1,
                     "hallu_total": 1}
    # with a similarity test (spaCy > 0.8 in the official scorer) that calls vehicle and dog similar, it is not
    # a hallucination and covers dog; it still covers car in Cog (the hallu words are checked first)
    similar = lambda a, b: {a, b} == {"vehicle", "dog"}  # noqa: E731
    got = generative_item(["vehicle"], ["dog"], ["car"], RELATION, similar=similar)
    assert got == {"nouns": 1, "hallucinated": 0, "truth_covered": 1, "truth_total": 1, "hallu_covered": 1,
                   "hallu_total": 1}
    # similar only to a hallu word ('street', listed under road): covers road in Cog and is still hallucinated
    got = generative_item(["lawn"], ["dog"], ["road"], RELATION, similar=lambda a, b: {a, b} == {"lawn", "street"})
    assert (got["hallu_covered"], got["hallucinated"], got["truth_covered"]) == (1, 1, 0)
    # exact truth matches never reach the similarity test
    calls = []
    generative_item(["puppy"], ["dog"], [], RELATION, similar=lambda a, b: calls.append((a, b)) or False)
    assert calls == []


def test_generative_clear_errors():
    with pytest.raises(ValueError, match=r"truth object 'zebra' has no entry in relation.json"):
        generative_item(["dog"], ["zebra"], [], RELATION)
    with pytest.raises(ValueError, match=r"hallu object 'zebra'"):
        generative_item(["dog"], ["dog"], ["zebra"], RELATION)
    with pytest.raises(ValueError, match=r"id 4 is a 'discriminative-hallucination' annotation, not a generative"):
        amber_generative({4: ["dog"]}, ANNOTATIONS, RELATION)
    with pytest.raises(ValueError, match=r"id 20 is not in 1\.\.19"):
        amber_generative({20: ["dog"]}, ANNOTATIONS, RELATION)


def test_discriminative_by_hand():
    got = amber_discriminative(RESPONSES, ANNOTATIONS)  # the generative responses 1-3 are skipped
    # existence (4-10): correct 4 (ids 4,6,7,8); pred No 4 (5,6,7,8); truth no 5 (6-10); both No 3 (6,7,8)
    #   acc 4/7.001 = 57.13; P 3/4.001 = 74.98 -> 75.0; R 3/5.001 = 59.99 -> 60.0
    #   F1 = 2(.75)(.6) / (.75+.6+0.001) = .9/1.351 = 66.62 -> 66.6 (with 0.0001 it would be 66.66 -> 66.7)
    assert got["existence"] == {"accuracy": 57.1, "precision": 75.0, "recall": 60.0, "f1": 66.6, "n": 7,
                                "unparsed": 0}
    # attribute pools state (11-13), number (14), action (15), each counter starting at 0.001 -> +0.003:
    #   correct 2 (11,12) / 5.003 = 39.98 -> 40.0; both No 1 (11) / pred No (1 + 0.003) = 99.70 -> 99.7;
    #   recall 1 / truth no (11,13,15 = 3 + 0.003) = 33.30 -> 33.3; F1 = 2(.997)(.333)/(1.330+.0001) = 49.92 -> 49.9
    assert got["attribute"] == {"accuracy": 40.0, "precision": 99.7, "recall": 33.3, "f1": 49.9, "n": 5,
                                "unparsed": 2}  # 'yes' (14) and 'No.' (15) are neither "Yes" nor "No"
    # state: 2/3.001 = 66.64; P 1/1.001 = 99.90; R 1/2.001 = 49.98 -> 50.0; F1 = 2(.999)(.5)/(1.499+.0001) = 66.64
    assert got["state"] == {"accuracy": 66.6, "precision": 99.9, "recall": 50.0, "f1": 66.6, "n": 3, "unparsed": 0}
    # number and action: one unparsed answer each -> nothing correct, no "No" predicted: 0 everywhere, no crash
    assert got["number"] == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 1, "unparsed": 1}
    assert got["action"] == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 1, "unparsed": 1}
    # relation (16-19; 'discriminative-relation' and 'relation' together): correct 2 (16,17) / 4.001 = 49.99;
    #   pred No (16,19) and truth no (16,18) both 2.001: P = R = 1/2.001 = 49.98 -> 50.0;
    #   F1 = 2(.5)(.5)/(1+.0001) = 49.995 -> 50.0
    assert got["relation"] == {"accuracy": 50.0, "precision": 50.0, "recall": 50.0, "f1": 50.0, "n": 4,
                               "unparsed": 1}  # ' No' has a leading space
    # overall (4-19): correct 8 / 16.001 = 50.00; both No 5 (6,7,8,11,16); pred No 7 -> 5/7.001 = 71.42 -> 71.4;
    #   truth no 10 -> 5/10.001 = 49.995 -> 50.0; F1 = 2(.714)(.5)/(1.214+.0001) = .714/1.2141 = 58.81 -> 58.8
    assert got["overall"] == {"accuracy": 50.0, "precision": 71.4, "recall": 50.0, "f1": 58.8, "n": 16,
                              "unparsed": 3}


def test_amber_score():
    # fixture: (100 - 27.3 + 58.8) / 2 = 131.5 / 2 = 65.75
    assert amber_score(chair=27.3, f1=58.8) == pytest.approx(65.75)
    # the README table: LLaVA-1.5 (100 - 7.8 + 74.7)/2 = 83.45 -> 83.5; Qwen-VL (100 - 5.5 + 84.9)/2 = 89.7
    assert round(amber_score(7.8, 74.7), 1) == 83.5
    assert amber_score(5.5, 84.9) == pytest.approx(89.7)


def test_yes_no_must_be_exact():
    annotations = [{"type": "discriminative-hallucination", "truth": "no"}] * 4
    responses = [{"id": i, "response": r} for i, r in enumerate(["No", "no", "NO", "No, there is none."], start=1)]
    got = amber_discriminative(responses, annotations)["existence"]
    assert got["unparsed"] == 3 and got["accuracy"] == round(1 / 4.001 * 100, 1) == 25.0  # only "No" counts


def test_discriminative_clear_errors():
    with pytest.raises(ValueError, match=r"id 0 is not in 1\.\.19"):
        amber_discriminative([{"id": 0, "response": "Yes"}], ANNOTATIONS)
    with pytest.raises(ValueError, match=r"id None is not in"):
        amber_discriminative([{"response": "Yes"}], ANNOTATIONS)
    with pytest.raises(ValueError, match=r"id 5 has more than one response"):
        amber_discriminative([{"id": 5, "response": "Yes"}, {"id": 5, "response": "No"}], ANNOTATIONS)
    with pytest.raises(ValueError, match=r"id 5: 'response' must be a string"):
        amber_discriminative([{"id": 5, "response": None}], ANNOTATIONS)
    with pytest.raises(ValueError, match=r"id 1: annotation truth must be 'yes' or 'no', got 'Yes'"):
        amber_discriminative([{"id": 1, "response": "Yes"}], [{"type": "relation", "truth": "Yes"}])
    with pytest.raises(ValueError, match=r"id 1: unknown annotation type 'discriminative-colour'"):
        amber_discriminative([{"id": 1, "response": "Yes"}], [{"type": "discriminative-colour", "truth": "yes"}])
