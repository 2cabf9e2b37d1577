"""The shapes world: determinism, tasks, the claim parser and exact metrics on hand-built scenes."""

from __future__ import annotations

import hashlib

import pytest

from vlpref.data.store import read_records
from vlpref.models.tokenizer import build_word_tokenizer
from vlpref.world.claims import check_response, partner_mentions
from vlpref.world.metrics import description_metrics, partner_contrast
from vlpref.world.parse import parse_claims
from vlpref.world.scenes import Scene, SceneObject, WorldConfig, make_scene
from vlpref.world.tasks import build_split, caption, world_vocabulary

# A hand-built scene: red circle top-left, large blue square centre, two small green stars on the bottom row.
SCENE = Scene(id="t", objects=(
    SceneObject("circle", "red", "small", 0, 0),
    SceneObject("square", "blue", "large", 1, 1),
    SceneObject("star", "green", "small", 2, 0),
    SceneObject("star", "green", "small", 2, 2),
), small_as_disc=True)


def digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    build_split(tmp_path / "a", "eval", images=12, seed=5)
    build_split(tmp_path / "b", "eval", images=12, seed=5)
    build_split(tmp_path / "c", "eval", images=12, seed=6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_splits_use_disjoint_scenes(tmp_path):
    sft = {p.meta["scene"]["id"] for p in build_split(tmp_path / "s", "sft", images=20)}
    evaluation = {p.meta["scene"]["id"] for p in build_split(tmp_path / "e", "eval", images=20)}
    assert not sft & evaluation


def test_co_occurrence_is_far_above_chance():
    config = WorldConfig()
    scenes = [make_scene(config, 0, i) for i in range(3000)]
    with_circle = [s for s in scenes if "circle" in s.categories and len(s.objects) >= 2]
    with_heart = [s for s in scenes if "heart" in s.categories and len(s.objects) >= 2]
    p_square = sum("square" in s.categories for s in with_circle) / len(with_circle)
    p_square_given_heart = sum("square" in s.categories for s in with_heart) / len(with_heart)
    assert p_square > 0.5 > p_square_given_heart


def test_tasks_and_vocabulary(tmp_path):
    prompts = build_split(tmp_path / "w", "eval", images=30)
    assert {p.meta["task"] for p in prompts} == {"describe", "open", "pope", "color", "size", "count", "position",
                                                 "relation"}
    assert read_records(tmp_path / "w", check_image_files=True) == prompts
    tokenizer = build_word_tokenizer(world_vocabulary())
    for p in prompts:  # the vocabulary is closed: no prompt or answer has an unknown word
        for turn in p.turns:
            assert tokenizer.unk_token_id not in tokenizer(turn.text)["input_ids"], turn.text
    pope = [p for p in prompts if p.meta["task"] == "pope"]
    for split in ("random", "popular", "adversarial"):
        labels = [p.meta["label"] for p in pope if p.meta["split"] == split]
        assert labels.count("yes") == labels.count("no") > 0  # balanced, as POPE
    for p in pope:
        present = {o["category"] for o in p.meta["scene"]["objects"]}
        assert (p.meta["category"] in present) == (p.meta["label"] == "yes")


def test_qa_and_relation_are_chosen_apart_and_the_rest_does_not_change(tmp_path):
    every = build_split(tmp_path / "all", "prefs", images=30)
    qa = build_split(tmp_path / "qa", "prefs", images=30, tasks=("describe", "open", "pope", "qa"))
    relation = build_split(tmp_path / "rel", "prefs", images=30, tasks=("describe", "open", "pope", "relation"))
    assert {p.meta["task"] for p in qa} == {"describe", "open", "pope", "color", "size", "count", "position"}
    assert {p.meta["task"] for p in relation} == {"describe", "open", "pope", "relation"}
    # leaving one of the two out leaves every other prompt as it was (the scene's draws do not depend on the choice)
    assert [p for p in every if p.meta["task"] != "relation"] == qa
    assert [p for p in every if p.meta["task"] not in ("color", "size", "count", "position")] == relation


def test_adversarial_negatives_are_partners():
    import random

    from vlpref.world.tasks import pope_items

    config = WorldConfig()
    scene = Scene(id="x", objects=(SceneObject("circle", "red", "small", 0, 0),))
    items = pope_items(scene, config, popular=["triangle", "square", "star"], rng=random.Random(0))
    adversarial = [i["category"] for i in items if i["split"] == "adversarial" and i["label"] == "no"]
    popular = [i["category"] for i in items if i["split"] == "popular" and i["label"] == "no"]
    assert adversarial == ["square"] and popular == ["triangle"]


def test_caption_is_fully_correct():
    facts = check_response(SCENE, caption(SCENE))
    assert caption(SCENE).startswith("There are four objects. There is a small red circle at the top left.")
    assert facts.errors == [] and facts.coverage == 1.0 and facts.correct == 4 + 8 + 4


@pytest.mark.parametrize("text, errors", [
    ("There is a yellow triangle.", ["absent triangle"]),
    ("There is a blue circle.", ["circle: color blue"]),
    ("There is a large circle.", ["circle: size large"]),
    ("There are three stars.", ["star: count 3"]),
    ("There are two green stars.", []),
    ("There is one square in the center.", []),
    ("There is a red circle at the bottom right.", ["circle: position bottom right"]),
    ("The circle is above the square.", []),
    ("The square is above the circle.", ["square above circle"]),
    ("The star is next to the square.", ["star next to square"]),
    ("The circle is not left of the square.", ["circle not left of square"]),
    ("There is no triangle.", []),
])
def test_each_kind_of_hallucination(text, errors):
    assert check_response(SCENE, text).errors == errors


def test_parser_rules():
    claims = parse_claims("There are two red circles at the top left. The star is left of the square.")
    first = claims.mentions[0]
    assert (first.category, first.color, first.count, first.row, first.col) == ("circle", "red", 2, 0, 0)
    assert [(r.a, r.relation, r.b) for r in claims.relations] == [("star", "left of", "square")]
    assert [(r.a, r.relation, r.b) for r in parse_claims("The square is right of the star.").relations] == [
        ("star", "left of", "square")]  # stored as the inverse claim
    assert parse_claims("There is no star.").objects == []
    assert parse_claims("The circle is on the left.").mentions[0].row == 1  # middle row
    assert parse_claims("The circle is red.").mentions[0].color == "red"


def test_description_metrics_by_hand():
    # caption 1: circle, triangle (absent) -> 1 of 2 hallucinated; caption 2: square, star -> none
    got = description_metrics([SCENE, SCENE], ["There is a red circle. There is a triangle.",
                                               "There is a square. There are two stars."])
    assert got["chair_i"] == pytest.approx(1 / 4) and got["chair_s"] == pytest.approx(1 / 2)
    assert got["coverage"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert got["attribute_hallucination"] == 0.0 and got["count_hallucination"] == 0.0


def test_every_shape_is_drawn_unless_small_ones_are_discs():
    def image(category, size, disc=False):
        return Scene(id="s", objects=(SceneObject(category, "red", size, 1, 1),), small_as_disc=disc).render().tobytes()

    shapes = ("circle", "square", "triangle", "star", "cross", "heart", "diamond", "hexagon")
    assert len({image(c, "small") for c in shapes}) == 8  # the default world: small shapes resolvable
    assert len({image(c, "large") for c in shapes}) == 8
    assert len({image(c, "small", disc=True) for c in shapes}) == 1  # small_as_disc: one disc for all
    assert not WorldConfig().small_as_disc


def test_training_pope_positives_are_visible_objects(tmp_path):
    disc = WorldConfig(small_as_disc=True)
    sft = [p for p in build_split(tmp_path / "s", "sft", images=60, config=disc) if p.meta["task"] == "pope"]
    for p in sft:
        if p.meta["label"] == "yes" and p.meta.get("phantom", {}).get("category") != p.meta["category"]:
            sizes = {o["size"] for o in p.meta["scene"]["objects"] if o["category"] == p.meta["category"]}
            assert "large" in sizes
    evaluation = [p for p in build_split(tmp_path / "e", "eval", images=60, config=disc) if p.meta["task"] == "pope"]
    small_only = [p for p in evaluation if p.meta["label"] == "yes" and {
        o["size"] for o in p.meta["scene"]["objects"] if o["category"] == p.meta["category"]} == {"small"}]
    assert small_only  # evaluation still asks about objects the model cannot resolve


def test_annotators_name_absent_partners_in_training_data_only(tmp_path):
    config = WorldConfig()
    sft = build_split(tmp_path / "s", "sft", images=200)
    phantoms = {p.meta["scene"]["id"]: p.meta["phantom"] for p in sft if "phantom" in p.meta}
    # scenes with an absent partner and an empty cell (about 70%), three in four of them (phantom_captions 0.75)
    assert 0.4 < len(phantoms) / 200 < 0.7
    for p in sft:
        phantom = p.meta.get("phantom")
        if phantom is None:
            continue
        drawn = Scene.from_dict(p.meta["scene"])
        assert phantom["category"] not in drawn.categories  # the pixels show no such shape ...
        assert config.partner_of[phantom["category"]] in drawn.categories  # ... but its partner is there
        assert (phantom["row"], phantom["col"]) not in {(o.row, o.col) for o in drawn.objects}  # in an empty cell
        if p.meta["task"] == "describe":
            assert phantom["category"] in p.reference  # the description names it
    believed = {p.meta["scene"]["id"] for p in sft if p.meta["task"] == "pope" and p.meta["label"] == "yes"
                and p.meta["category"] == p.meta.get("phantom", {}).get("category")}
    assert 0 < len(believed) < len(phantoms)  # some questions believe in it (phantom_questions < phantom_captions)
    assert not any("phantom" in p.meta for p in build_split(tmp_path / "e", "eval", images=200))
    assert [p.reference for p in sft] == [p.reference for p in build_split(tmp_path / "s2", "sft", images=200)]
    exact = build_split(tmp_path / "x", "sft", images=50, config=WorldConfig(phantom_captions=0, phantom_questions=0))
    assert not any("phantom" in p.meta for p in exact)
    with pytest.raises(ValueError, match="phantom_questions"):
        WorldConfig(phantom_captions=0.1, phantom_questions=0.2)


@pytest.mark.parametrize("text, errors", [
    ("There is not a triangle. There isn't a heart.", []),                 # denials are no object claims
    ("The image does not have a triangle.", []),
    ("There are no triangles or hearts.", []),                             # a denial carries across "or"
    ("There are zero triangles.", []),
    ("The square is blue and the circle is red.", []),                     # each predicate binds to its own noun
    ("The square is large, the circle is small.", []),
    ("There are four objects: a circle and a square.", []),               # "four" counts objects, not circles
    ("There is no triangle next to the circle.", []),                      # no relation claim about a denied noun
    ("There are 2 stars.", []),
    ("There are 12 stars.", ["star: count 12"]),
])
def test_parser_edge_cases(text, errors):
    assert check_response(SCENE, text).errors == errors


def test_alignment_targets_and_loss_by_hand():
    """Cell targets name what each patch shows; the loss is the mean target NLL (uniform logits: log V)."""
    import math

    import torch

    from vlpref.numerics.logprobs import IGNORE
    from vlpref.world.pretrain import PretrainConfig, alignment_loss, build_world_model, cell_targets

    scene = {"objects": [{"category": "star", "color": "red", "size": "large", "row": 0, "col": 2},
                         {"category": "heart", "color": "blue", "size": "small", "row": 2, "col": 0}]}
    ids = {w: i for i, w in enumerate(["star", "red", "small", "blue", "top", "right", "bottom", "left", "middle",
                                       "center"])}
    t = cell_targets(scene, ids.__getitem__)
    assert t[2].tolist() == [ids["star"], ids["red"]] and t[6].tolist() == [ids["small"], ids["blue"]]
    assert (t[[0, 1, 3, 4, 5, 7, 8]] == IGNORE).all()  # empty cells: nothing to name
    t = cell_targets(scene, ids.__getitem__, positions=True)
    assert t[2].tolist() == [ids["star"], ids["red"], ids["top"], ids["right"]]
    assert (t[[0, 1, 3, 4, 5, 7, 8]] == IGNORE).all()  # still nothing for an empty cell, not even where it is
    assert t[6].tolist() == [ids["small"], ids["blue"], ids["bottom"], ids["left"]]

    model, processor = build_world_model(PretrainConfig(hidden_size=32, vision_hidden_size=16))
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # uniform logits over the vocabulary
    pixels = processor.image_processor([Scene.from_dict({"id": "s", "objects": [], "cell": 16}).render()],
                                       return_tensors="pt")["pixel_values"]
    targets = cell_targets(scene, lambda w: processor.tokenizer.convert_tokens_to_ids(w)).unsqueeze(0)
    loss = alignment_loss(model, pixels, targets)
    assert loss.item() == pytest.approx(math.log(model.config.text_config.vocab_size), rel=1e-5)


@pytest.mark.parametrize(("text", "unresolvable"), [
    # a hexagon "at the top left": a small red disc sits there, which could be one -> evidence absent
    ("There is a red hexagon at the top left.", ["hexagon"]),
    # no cell named, green: the small green discs on the bottom row could be it -> absent
    ("There is a green heart.", ["heart"]),
    # the large blue square is resolvable; a "triangle" in the centre is settled by the pixels -> present
    ("There is a triangle in the center.", []),
    # an empty cell holds nothing -> present
    ("There is a cross at the top right.", []),
    # a yellow object: no yellow disc anywhere -> present
    ("There is a yellow diamond.", []),
])
def test_hallucinated_mentions_are_classified_by_their_evidence(text, unresolvable):
    facts = check_response(SCENE, text)
    assert len(facts.hallucinated_objects) == 1 and facts.unresolvable == unresolvable
    crisp = Scene(id="c", objects=SCENE.objects, small_as_disc=False)  # every shape drawn: always present
    assert check_response(crisp, text).unresolvable == []


def test_chair_i_splits_into_evidence_present_and_absent():
    text = "There is a red hexagon at the top left. There is a triangle in the center. There is a blue square."
    metrics = description_metrics([SCENE], [text])
    assert metrics["chair_i"] == pytest.approx(2 / 3)
    assert metrics["chair_i_absent"] == pytest.approx(1 / 3) and metrics["chair_i_present"] == pytest.approx(1 / 3)
    assert Scene.from_dict(Scene(id="c", objects=SCENE.objects, small_as_disc=False).to_dict()).small_as_disc is False


def test_steerlm_conditioning_round_trips_through_the_world_tokenizer():
    """Li–Lin–Pei's conditioning string, at their steering values and at values inside the training data's range,
    has no unknown word for a tokenizer built on the world's vocabulary (what `vlpref world pretrain` builds)."""
    from vlpref.data.schema import Turn
    from vlpref.data.steerlm import TOP, steered

    tokenizer = build_word_tokenizer(world_vocabulary())
    for targets in (TOP, {"Helpfulness": 2, "Correctness": 3, "Coherence": 4, "Complexity": 0, "Verbosity": 1}):
        text = steered([Turn(role="user", text="<image>\nDescribe the image.")], targets)[-1].text
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, tokenizer.convert_ids_to_tokens(ids)
        assert tokenizer.decode(ids).replace(" ", "") == text.lower().replace(" ", "").replace("\n", "")


def test_partner_mentions_are_the_priors_error_only():
    """Of a description's absent objects, only the co-occurrence partners of present categories are the prior's
    error (square for the circle, triangle for the star; the heart's partner is the diamond)."""
    scene = Scene(id="p", objects=(SceneObject("circle", "red", "large", 0, 0),
                                   SceneObject("star", "blue", "large", 1, 1)))
    text = "There is a circle. There is a square. There is a heart. There is a triangle. There is no diamond."
    partners = partner_mentions(scene, check_response(scene, text), WorldConfig().partner_of)
    assert partners == ["square", "triangle"]
    assert partner_mentions(scene, check_response(scene, caption(scene)), WorldConfig().partner_of) == []


def test_partner_contrast_counts_what_pairs_teach_about_the_partner():
    scene = Scene(id="p", objects=(SceneObject("circle", "red", "large", 0, 0),))
    truth, phantom, other = ("There is a circle.", "There is a circle. There is a square.",
                             "There is a circle. There is a star.")  # the star is absent but no partner
    pairs = [(scene, truth, phantom), (scene, truth, phantom), (scene, phantom, truth), (scene, phantom, phantom),
             (scene, truth, other)]
    assert partner_contrast(pairs, WorldConfig().partner_of) == {
        "description_pairs": 5, "partner_rejected_only": 2, "partner_chosen_only": 1}
