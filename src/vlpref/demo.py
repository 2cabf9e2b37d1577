"""`make demo` -> `vlpref demo`: the four papers' comparisons in miniature, offline, on the shapes world.

    vlpref demo --out runs/demo                  # one world seed
    vlpref demo --out runs/demo --seeds 3        # seeds 0, 1, 2: mean ± std, and each row's paired difference
    vlpref demo --out runs/demo --seeds 5,6,7    # these seeds (e.g. ones never used to choose settings)
    vlpref demo --out runs/demo-quick --quick    # a smoke version at toy sizes (the tests run it)

Per seed, through the recipes and library calls the CLI verbs use (recipes/*/data_world.yaml, train_world*.yaml):
1. data (`vlpref prefs`), each on its own world prefs split of `world_images` scenes:
   - VLFeedback: a pool of four world models answers, the oracle rates VLFeedback's three aspects, all pairs by
     mean rating;
   - Li–Lin–Pei: world-base answers four times at temperature 1.2, the oracle rates the HelpSteer attributes: DPO
     pairs, the best answer per prompt (rejection sampling), every answer conditioned on its ratings (SteerLM);
   - SeVa: world-base's greedy answers on the image and on a diffusion-noised copy;
   - POVID: the ground truth against the world injector's hallucinations;
2. training (`vlpref train`), every row from world-base with the same LoRA budget (600 steps of 8 examples; the
   preference rows with an NLL term on the chosen answer, `preference_train`): SFT on the ground-truth answers of
   Li–Lin–Pei's prompts, rejection sampling, SteerLM, DPO on HelpSteer-rated pairs, DPO on VLFeedback pairs, SeVa,
   SFT on SeVa's chosen answers (a control), POVID stage 1 then stage 2 (from stage 1's merged model), SFT on
   POVID's chosen answers (a control), mDPO (VLFeedback pairs + image terms);
3. evaluation on held-out world scenes (`vlpref world eval`): world-POPE F1 per split, CHAIR_s, CHAIR_i and its
   split into evidence-present and evidence-absent mentions (`vlpref.world.claims`), coverage, and the oracle's
   mean Helpfulness and Visual Faithfulness (1-5) over the descriptions and its Helpfulness over one short
   attribute / count / position question per scene (`helpful QA`). SteerLM is asked for 4 on every attribute,
   as Li–Lin–Pei evaluate it, and (a second row, same model) for the values its training data holds per task;
4. OUT/results.json (per row: mean and std over seeds, and the paired difference from the base row, seed by seed,
   with its std), OUT/results-per-seed.json, OUT/results.md (the values table and the differences table),
   OUT/*.png (values per metric group; differences.png: each row's difference from the base), printed as tables.

Every stage resumes: data stages from their journals, training from its checkpoints (a finished row is skipped),
evaluation from OUT/seed-N/eval/<row>.json. Stage logs go to OUT/demo.log.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from rich.console import Console
from rich.table import Table

from vlpref.config import StrictModel, load_yaml, overlay, read_yaml
from vlpref.errors import VlprefError

METRICS = ("pope_f1_random", "pope_f1_popular", "pope_f1_adversarial", "chair_s", "chair_i", "chair_i_present",
           "chair_i_absent", "coverage", "helpfulness", "faithfulness", "qa_helpfulness")
HEADERS = ("POPE rand", "POPE pop", "POPE adv", "CHAIR_s↓", "CHAIR_i↓", "CHAIR_i ev.present↓", "CHAIR_i ev.absent↓",
           "cover", "helpful", "faithful", "helpful QA")
RATINGS = ("helpfulness", "faithfulness", "qa_helpfulness")  # the oracle's 1-5 means, shown with 2 digits
PAPERS = ("vlfeedback", "li_lin_pei", "seva", "povid")


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    paper: str | None = None  # whose data it trains on
    recipe: str | None = None  # training recipe, relative to recipes/
    data: str = "pairs"  # the data subfolder of that paper's prefs output
    method: str | None = None  # overrides the recipe's method
    start: str | None = None  # another row whose trained model this one starts from (no recipe: evaluates it as is)
    steer: Literal["top", "in-range"] | None = None  # ask a SteerLM model for 4 on every attribute (Li–Lin–Pei) or
    # for the values its training data holds, per task type (`vlpref.data.steerlm.in_range_targets`)


ROWS = (
    Row("base", "base (world-base)"),
    Row("sft", "SFT", "li_lin_pei", "li_lin_pei/train_world.yaml", "candidates/prompts", "sft"),
    Row("rs", "rejection sampling", "li_lin_pei", "li_lin_pei/train_world.yaml", "pairs/rejection-sampling", "rs"),
    Row("steerlm", "SteerLM (asked for 4s)", "li_lin_pei", "li_lin_pei/train_world.yaml", "pairs/steerlm", "steerlm",
        steer="top"),
    Row("steerlm-in-range", "SteerLM (asked for in-range values)", "li_lin_pei", data="pairs/steerlm",
        start="steerlm", steer="in-range"),
    Row("dpo-helpsteer", "DPO, HelpSteer pairs (Li–Lin–Pei)", "li_lin_pei", "li_lin_pei/train_world.yaml"),
    Row("dpo-vlfeedback", "DPO, VLFeedback pairs (Silkie)", "vlfeedback", "vlfeedback/train_world.yaml"),
    Row("seva", "SeVa", "seva", "seva/train_world.yaml"),
    # SeVa's chosen answers (world-base's own on the clean image) alone, as SFT: what its NLL term does without pairs
    Row("sft-seva", "SFT on SeVa's chosen answers (control)", "seva", "li_lin_pei/train_world.yaml", method="sft"),
    Row("povid-stage1", "POVID stage 1", "povid", "povid/train_world_stage1.yaml"),
    Row("povid-stage2", "POVID stage 2", "povid", "povid/train_world_stage2.yaml", start="povid-stage1"),
    # POVID's chosen answers alone, as SFT: what the preference adds over imitating the ground truth
    Row("sft-povid", "SFT on POVID's chosen answers (control)", "povid", "li_lin_pei/train_world.yaml", method="sft"),
    Row("mdpo", "mDPO", "vlfeedback", "mdpo/train_world.yaml"),
)


class DemoConfig(StrictModel):
    recipe: Literal["demo"] = "demo"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="world seeds: a count (3: seeds 0, 1, 2) or a list (5,6,7); more than one "
                                         "reports mean ± std and paired differences from the base")
    world_images: dict[str, int] = Field(
        default_factory=lambda: {"vlfeedback": 40, "li_lin_pei": 90, "seva": 180, "povid": 40},
        description="scenes of each paper's prefs split (every paper needs its own: the papers' rules make very "
                    "different numbers of pairs per scene)")
    eval_images: int = Field(default=300, ge=1, description="held-out scenes for evaluation")
    sample_batch_size: int = Field(default=64, ge=1)
    eval_batch_size: int = Field(default=128, ge=1)
    # Every row trains the same number of steps, whatever the size of its paper's data: a fair comparison needs
    # the same budget. Chosen on development seeds 0 and 1 for the whole family (docs/world.md, "Choosing the demo's
    # settings"): 150 steps moved nothing; with more steps plain DPO's chosen log-probs fell (-16 to -57) and its
    # model stopped naming objects (likelihood displacement) unless an NLL term on the chosen answer held them.
    train: dict[str, Any] = Field(default_factory=lambda: {"max_steps": 600},
                                  description="training settings for every row, over each recipe's own")
    preference_train: dict[str, Any] = Field(
        default_factory=lambda: {"sft_weight": 1.0},
        description="over `train`, for the preference rows (method dpo: DPO, SeVa, POVID, mDPO); the papers use "
                    "sft_weight 0")
    row_train: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per row, over `train`")
    rows: list[str] = Field(default_factory=lambda: [r.name for r in ROWS])
    recipes: str | None = Field(default=None, description="the recipes folder (default: ./recipes, or the one "
                                                          "next to the vlpref source)")

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_or_list(cls, value: Any) -> Any:
        return parse_seeds(value) if isinstance(value, int | str) else value

    @model_validator(mode="after")
    def _rows_known_and_complete(self) -> DemoConfig:
        if sorted(self.world_images) != sorted(PAPERS):
            raise ValueError(f"world_images: give scenes for exactly the papers {', '.join(PAPERS)} "
                             f"(got {', '.join(self.world_images) or 'none'})")
        known = {r.name: r for r in ROWS}
        for name in self.rows:
            if name not in known:
                raise ValueError(f"rows: unknown row {name!r}; the rows are {', '.join(known)}")
            start = known[name].start
            if start and start not in self.rows:
                raise ValueError(f"rows: {name} starts from {start}'s model, so {start} must be a row too")
        return self

    def quick(self) -> DemoConfig:
        """Toy sizes: every stage runs, nothing is learned; for tests."""
        return self.model_copy(update={"world_images": dict.fromkeys(self.world_images, 2), "eval_images": 4,
                                       "train": {**self.train, "max_steps": 1}})


def parse_seeds(value: int | str) -> list[int]:
    """`--seeds`: a count N (seeds 0..N-1) or a comma-separated list of distinct seeds (one seed: "6,").

        >>> parse_seeds("3"), parse_seeds("5,6,7"), parse_seeds(2), parse_seeds("6,")
        ([0, 1, 2], [5, 6, 7], [0, 1], [6])
    """
    text = str(value).strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return list(range(count))
        seeds = [int(part) for part in text.removesuffix(",").split(",")]
    except ValueError:
        raise ValueError(f"seeds: {text!r} is neither a count (e.g. 3) nor a list of seeds (e.g. 5,6,7; one "
                         f"seed: 6,)") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds: {text!r} must list distinct seeds, none negative")
    return seeds


def recipes_dir(config: DemoConfig) -> Path:
    candidates = [Path(config.recipes)] if config.recipes else [Path("recipes"),
                                                                 Path(__file__).resolve().parents[2] / "recipes"]
    for folder in candidates:
        if (folder / "seva" / "data_world.yaml").is_file():
            return folder
    raise VlprefError(f"no recipes folder at {', '.join(map(str, candidates))}; run the demo from a vlpref checkout "
                      "or set `recipes` in the demo config")


# -- the stages -------------------------------------------------------------------------------------------------
def build_data(paper: str, out: Path, config: DemoConfig, seed: int, recipes: Path, log) -> dict:
    """Run `paper`'s world data recipe into `out`; returns the resolved recipe. Data made with another recipe (an
    edited data_world.yaml, other sizes) is made afresh: the stages' journals key requests by prompt, not by the
    settings that made the prompts, so resuming would silently keep the old data."""
    from vlpref.pairs.build import READS
    from vlpref.prefs import DataRecipe, run_recipe

    recipe = load_yaml(DataRecipe, recipes / paper / "data_world.yaml")
    if recipe.sample is not None:
        pool = [m.model_copy(update={"batch_size": config.sample_batch_size}) for m in recipe.sample.pool]
        recipe = recipe.model_copy(update={"sample": recipe.sample.model_copy(
            update={"world_images": config.world_images[paper], "seed": seed, "pool": pool})})
    reads = READS[recipe.pairs.strategy]  # only what this strategy reads (others are refused)
    recipe = recipe.model_copy(update={"pairs": recipe.pairs.model_copy(update={
        k: v for k, v in (("world_images", config.world_images[paper]), ("seed", seed)) if k in reads})})
    settings = json.loads(recipe.model_dump_json())
    marker = out.parent / f"{out.name}.json"
    if out.exists() and not _made_with(marker, settings):
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(settings))  # before running: a resumed run is checked against it
    run_recipe(recipe, out, log=log)
    return settings


def train_config(row: Row, data: Path, model: str, config: DemoConfig, seed: int, recipes: Path):
    from vlpref.training.config import TrainConfig

    recipe = read_yaml(recipes / row.recipe)
    preference = config.preference_train if (row.method or recipe.get("method")) == "dpo" else {}
    return overlay(TrainConfig, recipe,
                   {"data": str(data), "model": model, "seed": seed, "method": row.method, **config.train,
                    **preference, **config.row_train.get(row.name, {})},
                   source=f"{recipes / row.recipe} (demo row {row.name})")


def evaluate(model: str, eval_split: Path, row: Row, config: DemoConfig, data: Path) -> dict[str, float]:
    from vlpref.data.steerlm import TOP, in_range_targets
    from vlpref.data.store import read_records
    from vlpref.evaluation.world import TASKS, evaluate_world
    from vlpref.models.vlm import VLM

    steer = TOP if row.steer == "top" else None
    if row.steer == "in-range":  # the training data's tasks include some the evaluation does not ask (open, relation)
        in_range = in_range_targets(read_records(data / row.paper / row.data))
        steer = {task: in_range[task] for task in TASKS if task in in_range}
    results = evaluate_world(VLM.load(model), eval_split, batch_size=config.eval_batch_size, steer=steer, oracle=True)
    return {k: v for k, v in results.items() if k in METRICS or k.startswith("pope_yes_ratio")}


def data_figures(folder: Path) -> dict:
    """What a paper's data stage made: prompts (scenes' questions), pairs, distinct pairs, the figures the strategy
    wrote into the pairs' meta.json (SeVa: the share of degenerate rejected answers), and of the description pairs
    (`description_pairs`) how many name an absent co-occurrence partner (world-base's prior error) in the rejected
    answer alone (`partner_rejected_only`) and in the chosen answer alone (`partner_chosen_only`): what the pairs
    teach about the error the methods target."""
    from vlpref.data.store import read_meta, read_records
    from vlpref.world.metrics import partner_contrast
    from vlpref.world.scenes import Scene, WorldConfig

    pairs = read_records(folder / "pairs")
    meta = read_meta(folder / "pairs")
    prompts = {p.id: p for p in read_records(meta["prompts"])}
    figures = {"prompts": len(prompts), "pairs": len(pairs),
               "distinct_pairs": len({(p.prompt_id, p.chosen, p.rejected) for p in pairs})}
    described = [(Scene.from_dict(prompts[p.prompt_id].meta["scene"]), p.chosen, p.rejected) for p in pairs
                 if prompts[p.prompt_id].meta.get("task") in ("describe", "open")]
    figures |= partner_contrast(described, WorldConfig().partner_of)
    return figures | ({"rejected_degenerate": meta["rejected_degenerate"]} if "rejected_degenerate" in meta else {})


def _made_with(marker: Path, settings: dict) -> bool:
    """Whether `marker` records exactly `settings` (what a cached stage was made with)."""
    return marker.is_file() and json.loads(marker.read_text()) == settings


def _stale(made: Path, marker: Path, settings: dict) -> bool:
    """Whether `made` is missing or was made with other `settings` than `marker` records."""
    return not made.is_file() or not _made_with(marker, settings)


def run_seed(config: DemoConfig, out: Path, seed: int, recipes: Path, say, log) -> tuple[list[dict], dict]:
    """(one result per row, per paper what its data stage made) for one world seed."""
    from vlpref.evaluation.world import SPLIT_TASKS
    from vlpref.models.names import DEFAULT_MODEL, resolve_model
    from vlpref.training.trainer import train
    from vlpref.world.tasks import build_split

    rows = [r for r in ROWS if r.name in config.rows]
    seconds: dict[str, float] = {}
    data: dict[str, dict] = {}  # per paper: prompts, pairs, and the pairs' own figures (SeVa: degenerate share)
    made_with: dict[str, dict] = {}  # per paper: the data recipe its data was made with
    for paper in sorted({r.paper for r in rows if r.paper}, key=PAPERS.index):
        began = time.perf_counter()
        say(f"seed {seed}: data, {paper}")
        made_with[paper] = build_data(paper, out / "data" / paper, config, seed, recipes, log)
        seconds[f"data/{paper}"] = time.perf_counter() - began
        data[paper] = data_figures(out / "data" / paper)
    (out / "data.json").write_text(json.dumps(data, indent=2))
    eval_split = out / "eval-split"
    # What each cached stage was made with: a changed setting redoes that stage (and what depends on it) instead of
    # silently reusing it.
    split_settings = {"images": config.eval_images, "seed": seed, "tasks": list(SPLIT_TASKS)}
    if _stale(eval_split / "records.jsonl", out / "eval-split.json", split_settings):
        shutil.rmtree(eval_split, ignore_errors=True)
        shutil.rmtree(out / "eval", ignore_errors=True)  # every row's evaluation was on the old split
        build_split(eval_split, "eval", config.eval_images, tasks=SPLIT_TASKS, seed=seed)
        (out / "eval-split.json").write_text(json.dumps(split_settings))
    models = {"base": resolve_model(DEFAULT_MODEL)}
    made_of = {"base": "world-base"}  # row -> what its model was made with, for the caches that depend on it
    results = []
    for row in rows:
        if row.recipe is not None:
            run = out / "train" / row.name
            start = models[row.start] if row.start else models["base"]
            cfg = train_config(row, out / "data" / row.paper / row.data, start, config, seed, recipes)
            # the settings and the starting model's own record (POVID stage 2 starts from stage 1's model)
            settings = {"config": json.loads(cfg.model_dump_json()), "start": made_of.get(row.start or "base"),
                        "data": made_with[row.paper]}  # new data (same folder) trains afresh
            marker = run / "demo.json"
            if marker.is_file() and not _made_with(marker, settings):
                shutil.rmtree(run)  # made with other settings: train afresh
            if not (run / "summary.json").is_file():  # unfinished (the trainer resumes it) or not started
                began = time.perf_counter()
                say(f"seed {seed}: train, {row.label}")
                run.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps(settings))  # before training: a resumed run is checked against it
                train(cfg, run, log=log)
                seconds[f"train/{row.name}"] = time.perf_counter() - began
            elif not marker.is_file():  # finished before these records existed: trusted if its config matches
                if json.loads((run / "config.json").read_text()) != settings["config"]:
                    raise VlprefError(f"{run} was trained with other settings; remove it (or use another --out)")
                marker.write_text(json.dumps(settings))
            models[row.name] = str(run / "model")
            made_of[row.name] = (run / "demo.json").read_text() + (run / "summary.json").read_text()
        elif row.start:  # another row's model, evaluated another way
            models[row.name], made_of[row.name] = models[row.start], made_of[row.start]
        cached = out / "eval" / f"{row.name}.json"
        # the evaluation records what it evaluated: a retrained row is evaluated again
        trained = made_of[row.name]
        if cached.is_file() and json.loads(cached.read_text()).get("_model") == trained:
            metrics = {k: v for k, v in json.loads(cached.read_text()).items() if k != "_model"}
        else:
            began = time.perf_counter()
            say(f"seed {seed}: evaluate, {row.label}")
            metrics = evaluate(models[row.name], eval_split, row, config, out / "data")
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps({**metrics, "_model": trained}, indent=2))
            seconds[f"eval/{row.name}"] = time.perf_counter() - began
        results.append({"method": row.name, "label": row.label, "seed": seed, **metrics})
    (out / "seconds.json").write_text(json.dumps(seconds, indent=2))
    return results, data


# -- the report -------------------------------------------------------------------------------------------------
def summarize(results: list[dict]) -> list[dict]:
    """One row per method: each metric's mean over seeds (and std with several seeds) and, for every row but the base,
    the paired difference from the base on the same seed, `<metric>_diff`, with its std over seeds."""
    out = []
    base = {r["seed"]: r for r in results if r["method"] == "base"}
    for name in dict.fromkeys(r["method"] for r in results):
        mine = [r for r in results if r["method"] == name]
        row = {"method": name, "label": mine[0]["label"], "seeds": len(mine)}
        for key in METRICS:
            values = [r[key] for r in mine]
            row[key] = statistics.fmean(values)
            if len(values) > 1:
                row[f"{key}_std"] = statistics.stdev(values)
            if name != "base" and all(r["seed"] in base for r in mine):
                diffs = [r[key] - base[r["seed"]][key] for r in mine]
                row[f"{key}_diff"] = statistics.fmean(diffs)
                if len(diffs) > 1:
                    row[f"{key}_diff_std"] = statistics.stdev(diffs)
        out.append(row)
    return out


def _cell(row: dict, key: str, suffix: str = "") -> str:
    if f"{key}{suffix}" not in row:
        return "–"
    digits = 2 if key in RATINGS else 3
    sign = "+" if suffix else ""
    value = f"{row[f'{key}{suffix}']:{sign}.{digits}f}"
    return value + (f" ± {row[f'{key}{suffix}_std']:.{digits}f}" if f"{key}{suffix}_std" in row else "")


# The console tables: metric groups of at most four columns and "0.070±.002" cells, so that a table fits an
# 80-column terminal without rich cutting headers to "CHAIR…" (results.md keeps one wide table).
CONSOLE_GROUPS = (("POPE F1", METRICS[:3], ("random", "popular", "advers.")),
                  ("CHAIR, lower is better", METRICS[3:7], ("CHAIR_s", "CHAIR_i", "i:present", "i:absent")),
                  ("coverage and the oracle's 1-5 ratings", METRICS[7:], ("coverage", "helpful", "faithful", "QA")))


def _short_cell(row: dict, key: str, suffix: str = "") -> str:
    if f"{key}{suffix}" not in row:
        return "–"
    digits = 2 if key in RATINGS else 3
    value = f"{row[f'{key}{suffix}']:{'+' if suffix else ''}.{digits}f}"
    std = row.get(f"{key}{suffix}_std")
    return value + (f"±{std:.{digits}f}".replace("±0.", "±.") if std is not None else "")


def console_tables(summary: list[dict]) -> list[Table]:
    """Values, then paired differences from the base, each as one narrow table per metric group."""
    tables = []
    for kind, suffix in (("values", ""), ("difference from the base, paired by seed", "_diff")):
        for group, keys, headers in CONSOLE_GROUPS:
            table = Table(title=f"{group}: {kind}")
            table.add_column("method")
            for header in headers:
                table.add_column(header, justify="right")
            for row in summary:  # short names here; results.md has the labels
                if not (suffix and row["method"] == "base"):
                    table.add_row(row["method"], *(_short_cell(row, k, suffix) for k in keys))
            tables.append(table)
    return tables


def markdown(summary: list[dict]) -> str:
    head = ["| method | " + " | ".join(HEADERS) + " |", "|---|" + "---|" * len(HEADERS)]
    values = [f"| {row['label']} | " + " | ".join(_cell(row, k) for k in METRICS) + " |" for row in summary]
    diffs = [f"| {row['label']} | " + " | ".join(_cell(row, k, "_diff") for k in METRICS) + " |"
             for row in summary if row["method"] != "base"]
    spread = " ± std over seeds" if summary[0]["seeds"] > 1 else ""
    return "\n".join([f"Values (mean{spread}):", "", *head, *values, "",
                      f"Paired difference from the base, seed by seed (mean{spread}):", "", *head, *diffs]) + "\n"


def plot(summary: list[dict], out: Path) -> list[Path]:
    """Bar charts, one per metric group, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    groups = {"pope_f1": METRICS[:3], "chair": ("chair_s", "chair_i", "chair_i_present", "chair_i_absent"),
              "coverage": ("coverage",), "oracle": RATINGS}
    written = []
    labels = [r["method"] for r in summary]
    for name, keys in groups.items():
        fig, ax = plt.subplots(figsize=(10, 4))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            xs = [j + i * width for j in range(len(summary))]
            ax.bar(xs, [r[key] for r in summary], width, yerr=[r.get(f"{key}_std", 0.0) for r in summary],
                   label=key, capsize=2)
        ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(summary))], labels, rotation=30,
                      ha="right")
        ax.legend()
        ax.set_title(name)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    rows = [r for r in summary if r["method"] != "base" and "chair_i_diff" in r]
    if rows:  # one panel per metric: each row's paired difference from the base, error bars = std over seeds
        columns = (len(METRICS) + 1) // 2
        fig, axes = plt.subplots(2, columns, figsize=(3 * columns, 7))
        for ax, key, header in zip(axes.flat, METRICS, HEADERS, strict=False):
            ax.barh([r["method"] for r in rows], [r[f"{key}_diff"] for r in rows],
                    xerr=[r.get(f"{key}_diff_std", 0.0) for r in rows], capsize=2)
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_title(f"{header} − base", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.invert_yaxis()
        for ax in list(axes.flat)[len(METRICS):]:
            ax.axis("off")
        fig.tight_layout()
        path = out / "differences.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def run_demo(config: DemoConfig, out: str | Path, console: Console | None = None,
             tables: Console | None = None) -> list[dict]:
    """Progress lines go to `console` (the CLI's is stderr), the result tables to `tables` (default stdout)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model load would bury the demo's own lines
    console = console or Console(stderr=True)
    tables = tables or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = recipes_dir(config)
    log_file = (out / "demo.log").open("a")

    def log(message: str) -> None:  # the stages' own progress lines: kept, not printed
        log_file.write(f"{message}\n")
        log_file.flush()

    began = time.perf_counter()

    def say(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - began:6.0f} s[/] {message}")
        log(message)

    results, data = [], {}
    for seed in config.seeds:
        rows, data[str(seed)] = run_seed(config, out / f"seed-{seed}", seed, recipes, say, log)
        results += rows
    (out / "data.json").write_text(json.dumps(data, indent=2))
    summary = summarize(results)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results-per-seed.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(summary))
    plot(summary, out)
    tables.print(f"shapes world, seed(s) {', '.join(map(str, config.seeds))}, {config.eval_images} held-out scenes"
                 f"{', mean±std over seeds' if len(config.seeds) > 1 else ''}:")
    for table in console_tables(summary):
        tables.print(table)
    for paper in PAPERS:
        figures = [data[str(seed)][paper] for seed in config.seeds if paper in data[str(seed)]]
        if figures:
            tables.print(f"data, {paper}: " + ", ".join(f"{key} {statistics.fmean(f[key] for f in figures):g}"
                                                        for key in figures[0]))
    console.print(f"{time.perf_counter() - began:.0f} s; results in {out}/results.json, results.md, data.json and "
                  "*.png")
    log_file.close()
    return summary
