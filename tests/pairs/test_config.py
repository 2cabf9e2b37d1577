"""A pairs config refuses every key its strategy does not read, naming the key and who reads it."""

import pytest

from vlpref.config import parse
from vlpref.errors import ConfigError
from vlpref.pairs.build import READS, STRATEGIES, PairsConfig


@pytest.mark.parametrize(("strategy", "key", "value", "reader"), [
    ("vlfeedback", "injection_kinds", ["object"], "povid"),
    ("seva", "margin", 1.0, "vlfeedback"),
    ("seva", "world_images", 50, "povid, image-contrast"),
    ("helpsteer", "augment", {"op": "flip"}, "image-contrast"),
    ("povid", "annotations", "runs/x", "vlfeedback, helpsteer"),
    ("image-contrast", "seed", 3, "helpsteer, povid"),
])
def test_a_key_the_strategy_does_not_read_is_refused(strategy, key, value, reader):
    with pytest.raises(ConfigError, match=f"{key} does not apply to strategy {strategy} \\(it is read by {reader}\\)"):
        parse(PairsConfig, {"strategy": strategy, key: value}, source="pairs.yaml")


def test_what_a_strategy_reads_is_accepted_and_a_whole_dump_reloads():
    config = parse(PairsConfig, {"strategy": "vlfeedback", "margin": 1.0, "annotations": "runs/a"})
    assert parse(PairsConfig, config.model_dump()) == config  # defaults of other strategies' keys are not "set"
    assert set(READS) == set(STRATEGIES)  # every strategy has a function and a list of what it reads
