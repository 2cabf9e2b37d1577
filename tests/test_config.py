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
