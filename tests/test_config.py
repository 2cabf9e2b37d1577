"""Typed configs: unknown keys fail naming the key and the nearest valid one; every shipped recipe loads."""

from pathlib import Path

import pytest
import yaml

from vlpref.config import StrictModel, load_yaml, parse
from vlpref.demo import DemoConfig
from vlpref.errors import ConfigError
from vlpref.prefs import DataRecipe
from vlpref.training.config import TrainConfig
from vlpref.world.pretrain import PoolConfig

RECIPES = Path(__file__).parent.parent / "recipes"
# recipe name (its `recipe:` key) -> the schema that runs it; grows as recipes are added.
SCHEMAS = {"demo": DemoConfig, "world-pretrain": PoolConfig, "preference-data": DataRecipe,
           "training": TrainConfig}


def test_unknown_key_names_nearest_valid_key(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("recipe: demo\neval_imges: 3\n")
    with pytest.raises(ConfigError, match=r"demo\.yaml: unknown key 'eval_imges'; did you mean 'eval_images'\?"):
        load_yaml(DemoConfig, path)


def test_unknown_nested_key_and_bad_value():
    with pytest.raises(ConfigError) as info:
        parse(TrainConfig, {"method": "dpo", "data": "d", "lora": {"dropuot": 0.1}, "epochs": 0}, source="cli")
    message = str(info.value)
    assert "cli: unknown key 'lora.dropuot'; did you mean 'lora.dropout'?" in message
    assert "cli: epochs: Input should be greater than or equal to 1" in message


def test_unknown_key_without_near_match_lists_valid_keys():
    class Small(StrictModel):
        alpha: int = 1

    with pytest.raises(ConfigError, match=r"unknown key 'zzz' \(valid keys: alpha\)"):
        parse(Small, {"zzz": 1})


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rows: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_yaml(DemoConfig, path)


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_shipped_recipe_loads(path):
    name = yaml.safe_load(path.read_text())["recipe"]
    assert name in SCHEMAS, f"{path}: no schema registered for recipe {name!r}"
    load_yaml(SCHEMAS[name], path)


def test_recipes_exist():
    assert list(RECIPES.rglob("*.yaml")), "the recipe test must not pass vacuously"


def test_demo_recipe_equals_the_defaults():
    """`make demo` runs DemoConfig's defaults; recipes/demo.yaml must show exactly those."""
    assert load_yaml(DemoConfig, RECIPES / "demo.yaml") == DemoConfig()


def test_world_recipe_equals_the_defaults():
    """`vlpref world pretrain` without --config must make what recipes/world_pretrain.yaml describes."""
    assert load_yaml(PoolConfig, RECIPES / "world_pretrain.yaml") == PoolConfig()


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig

    configs = sorted((RECIPES.parent / "configs" / "accelerate").glob("*.yaml"))
    assert configs
    for path in configs:
        ClusterConfig.from_yaml_file(str(path))  # raises on keys accelerate does not know


@pytest.mark.parametrize("alias, ours", [("learning_rate", "lr"), ("num_train_epochs", "epochs"),
                                         ("per_device_train_batch_size", "batch_size"),
                                         ("gradient_accumulation_steps", "grad_accum"), ("lora_r", "lora.r")])
def test_hugging_face_names_point_at_ours(alias, ours):
    """Before: the nearest spelling of learning_rate was merge_lora."""
    with pytest.raises(ConfigError, match=rf"r\.yaml: unknown key '{alias}'; did you mean '{ours}'\?"):
        parse(TrainConfig, {"method": "dpo", "data": "d", alias: 1}, source="r.yaml")


def test_an_alias_points_only_at_a_key_that_exists():
    class Small(StrictModel):
        rate: float = 1.0

    with pytest.raises(ConfigError, match=r"unknown key 'learning_rate' \(valid keys: rate\)"):
        parse(Small, {"learning_rate": 1})


def test_set_reaches_any_key_dotted_for_nested_ones():
    from vlpref.config import overlay

    base = {"method": "dpo", "data": "d", "lora": {"r": 4, "alpha": 8}}
    cfg = overlay(TrainConfig, base, {"seed": 3}, sets=["lr=1e-4", "lora.r=8", "max_grad_norm=null",
                                                        "lora.target_modules=[q_proj, v_proj]", "beta=0.5"])
    assert (cfg.lr, cfg.lora.r, cfg.lora.alpha, cfg.max_grad_norm, cfg.seed) == (1e-4, 8, 8.0, None, 3)
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.beta == 0.5
    assert base["lora"]["r"] == 4  # the recipe's dict is not changed
    recipe = overlay(DataRecipe, {"method": "seva", "judge": None, "pairs": {"strategy": "seva"},
                                  "sample": {"pool": [{"model": "a"}, {"model": "b"}]}},
                     {}, sets=["judge.rubric=helpsteer", "sample.pool.1.n=5"])
    assert recipe.judge.rubric == "helpsteer" and recipe.sample.pool[1].n == 5
    demo = overlay(DemoConfig, {}, {}, sets=["train.lr=0.001", "world_images.seva=7"])
    # a section the recipe leaves out starts from its default: the other papers' scenes and max_steps stay
    assert demo.train == {"max_steps": 600, "lr": 0.001}
    assert demo.world_images == {**DemoConfig().world_images, "seva": 7}


@pytest.mark.parametrize("item, message", [
    ("learning_rate=1e-4", "--set learning_rate: unknown key 'learning_rate'; did you mean 'lr'?"),
    ("lora.rank=8", "--set lora.rank: unknown key 'lora.rank'"),
    ("lr", "--set lr: expected KEY=VALUE"),
    ("lora..r=1", "--set lora..r: expected KEY=VALUE"),
    ("lr=[1", "--set lr: the value is not valid YAML (expected ',' or ']', but got '<stream end>' at character 3)"),
    ("lr.x=1", "--set lr.x: lr takes a value, not keys"),
    ("seed=4", "--set seed: seed is also given by its own option; give it once"),
])
def test_bad_set_items_name_the_item(item, message):
    from vlpref.config import overlay

    with pytest.raises(ConfigError) as info:
        overlay(TrainConfig, {"method": "dpo", "data": "d"}, {"seed": 3}, sets=[item])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_bad_set_list_entries():
    from vlpref.config import overlay

    base = {"method": "seva", "pairs": {"strategy": "seva"}, "sample": {"pool": [{"model": "a"}]}}
    with pytest.raises(ConfigError, match=r"--set sample\.pool\.3\.n: sample\.pool has 1 entries \(0 to 0\)"):
        overlay(DataRecipe, base, {}, sets=["sample.pool.3.n=2"])
    with pytest.raises(ConfigError, match=r"sample\.pool is a list; pick an entry by number, e\.g\. sample\.pool\.0"):
        overlay(DataRecipe, base, {}, sets=["sample.pool.n=2"])


def test_a_data_recipe_method_must_be_a_method():
    """`method: sevaa` was accepted as free text (a recipe that names no paper runs without a word)."""
    from vlpref.config import overlay

    with pytest.raises(ConfigError, match="method"):
        overlay(DataRecipe, {"method": "sevaa", "pairs": {"strategy": "povid"}}, {})
    assert overlay(DataRecipe, {"method": "povid", "pairs": {"strategy": "povid"}}, {}).method == "povid"
