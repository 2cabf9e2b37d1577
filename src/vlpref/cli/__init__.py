"""`vlpref` command line: a thin dispatcher to the library. Only built verbs are listed.

    vlpref tiny llava models/tiny-llava
    vlpref data import llava llava_instruct.json --images coco/ --out data/prompts
    vlpref data export trl data/pairs export/trl
    vlpref demo --out runs/demo

One module per group of verbs: `data` (tiny models, import, export, checks), `stages` (sample, judge, pairs, prefs,
train, view, serve, demo), `evaluate` (eval), `world` (the shapes world), `bench` (speed benchmarks). `app` holds
the typer apps, the shared options and `recipe_config`, the one way a recipe file and command-line options combine.
Several training processes: `accelerate launch -m vlpref.cli train ...` or `torchrun --nproc_per_node N -m vlpref.cli
train ...`.
"""

from vlpref.cli import bench, data, evaluate, stages, world  # noqa: F401  (each registers its verbs on `app`)
from vlpref.cli.app import app, main

__all__ = ["app", "main"]
