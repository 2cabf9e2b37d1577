"""The typer apps, the console, the options several verbs share, and how a recipe meets the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vlpref.errors import VlprefError

app = typer.Typer(help="Align vision-language models with preference data.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Import, check, convert and export datasets.", no_args_is_help=True)
import_app = typer.Typer(help="Bring outside data into a vlpref dataset folder.", no_args_is_help=True)
export_app = typer.Typer(help="Write a dataset folder in another trainer's format.", no_args_is_help=True)
data_app.add_typer(import_app, name="import")
data_app.add_typer(export_app, name="export")
app.add_typer(data_app, name="data")
world_app = typer.Typer(help="The shapes world: scenes with exact ground truth, a tiny pretrained VLM, metrics.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")
bench_app = typer.Typer(help="Speed benchmarks, written as JSON (see docs/benchmarks.md).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
eval_app = typer.Typer(help="Evaluation: `vlpref eval --benchmark NAME --model M --data PATH --out OUT` generates, "
                       "judges and scores; `score` scores answers made by any tool; `compare`.")
app.add_typer(eval_app, name="eval")

console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option(help="recipe YAML; options given here override it")]
JsonOpt = Annotated[Path, typer.Option("--json", help="where to write the figures")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="any config key, dotted for nested ones (--set lora.r=8); the value is read "
    "as YAML; repeatable; over the recipe")]


def recipe_config(schema, path: Path | None, stage: str | None = None, merge: tuple[str, ...] = (),
                  sets: list[str] | None = None, **options):
    """The YAML at `path` (or the schema's defaults) with the command-line options that were given on top, then the
    `--set KEY=VALUE` items (`vlpref.config.overlay`). A data recipe (recipe: preference-data) gives its `stage`
    section."""
    from vlpref.config import overlay, read_yaml
    from vlpref.prefs import stage_config

    base = {}
    if path:
        base = read_yaml(path)
        base = stage_config(base, stage) if stage else base
    return overlay(schema, base, options, source=str(path) if path else "the command line", merge=merge,
                   sets=sets or ())


def main() -> None:
    try:
        app()
    except VlprefError as error:
        # soft_wrap: the message stays one line however narrow the terminal (scripts grep for it)
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)  # "[x]" stays text
        sys.exit(2)
