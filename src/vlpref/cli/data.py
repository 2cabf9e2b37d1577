"""Verbs on datasets: tiny models to try things on, import, export, validate, HF conversions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlpref.cli.app import app, console, data_app, export_app, import_app
from vlpref.errors import VlprefError

OnErrorOpt = Annotated[str, typer.Option("--on-error", help="raise: stop at the first bad record; skip: write it to "
                                         "the rejects file and go on")]
RejectsOpt = Annotated[Path | None, typer.Option(help="rejects file (default: OUT/rejects.jsonl)")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace what OUT holds already")]


def _fresh(out: Path, overwrite: bool) -> None:
    """Refuse to import into a folder that holds something already (another import, a run, anything), unless
    --overwrite: the import replaces its records and meta.json."""
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise VlprefError(f"--out {out} is not empty; choose a new folder or pass --overwrite to replace it")


def _nothing(count: int, path, log) -> None:
    """An import that yields no record is an error, naming why (every record rejected, or none there)."""
    if count:
        return
    if log is not None and log.count:
        log.close()
        raise VlprefError(f"{path}: every record was rejected ({log.count}); nothing imported; reasons in {log.path}")
    raise VlprefError(f"{path}: no records to import")


def _rejects(on_error: str, rejects: Path | None, out: Path):
    from vlpref.data.rejects import RejectLog

    if on_error not in ("raise", "skip"):
        raise VlprefError(f"--on-error must be raise or skip, not {on_error!r}")
    return RejectLog(rejects or out / "rejects.jsonl", on_error=on_error)  # type: ignore[arg-type]


def _report(written: int, what: str, out: Path, log) -> None:
    console.print(f"[green]wrote {written} {what}[/] to {out}")
    if log is not None and log.count:
        console.print(f"[yellow]skipped {log.count} bad record(s)[/]; reasons in {log.path}")
    if log is not None:
        log.close()


@app.command()
def tiny(
    arch: Annotated[str, typer.Argument(help="llava | qwen2_vl | qwen2_5_vl | idefics3 | smolvlm | gemma3")],
    out: Annotated[Path, typer.Argument(help="folder for the model (standard HF layout)")],
    image_size: int = 32,
    seed: int = 0,
):
    """Build a tiny random-weight model of a real architecture, offline (for tests and trying things)."""
    from vlpref.models.tiny import ARCHITECTURES, save_tiny

    if arch not in ARCHITECTURES:
        raise VlprefError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    save_tiny(arch, out, image_size=image_size, seed=seed)
    console.print(f"[green]saved tiny {arch}[/] to {out}")


@import_app.command("llava")
def import_llava_cmd(
    path: Annotated[Path, typer.Argument(help="LLaVA conversation JSON or JSONL")],
    images: Annotated[Path, typer.Option(help="root the records' image paths are relative to")],
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """LLaVA instruction JSON (`<image>` placeholders) -> prompts."""
    from vlpref.data.importers import import_llava
    from vlpref.data.store import write_records

    _fresh(out, overwrite)
    log = _rejects(on_error, rejects, out)
    prompts = import_llava(path, images, out, rejects=log)
    _nothing(len(prompts), path, log)
    _report(write_records(out, "prompts", prompts), "prompts", out, log)


@import_app.command("vlfeedback")
def import_vlfeedback_cmd(
    path: Annotated[Path, typer.Argument(help="VLFeedback release: JSON/JSONL, parquet, or a save_to_disk folder")],
    out: Annotated[Path, typer.Option(help="folder; gets prompts/, candidates/, annotations/")],
    images: Annotated[Path | None, typer.Option(help="image root, when `image` holds paths")] = None,
    judge_id: str = "gpt-4v",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """The released VLFeedback layout -> prompts, candidates and per-aspect annotations."""
    from vlpref.data.importers import import_vlfeedback
    from vlpref.data.store import write_records

    _fresh(out, overwrite)
    log = _rejects(on_error, rejects, out)
    prompts, candidates, annotations = import_vlfeedback(path, out / "prompts", image_root=images, rejects=log,
                                                         judge_id=judge_id)
    _nothing(len(prompts), path, log)
    # Each folder names the ones it was made from, as sample and judge write them, so judge and pairs find them.
    write_records(out / "prompts", "prompts", prompts)
    write_records(out / "candidates", "candidates", candidates, prompts=str((out / "prompts").resolve()))
    written = write_records(out / "annotations", "annotations", annotations, judge=judge_id,
                            candidates=str((out / "candidates").resolve()), prompts=str((out / "prompts").resolve()))
    console.print(f"[green]wrote {len(prompts)} prompts, {len(candidates)} candidates[/]")
    _report(written, "annotations", out, log)


@import_app.command("hf")
def import_hf_cmd(
    path: Annotated[str, typer.Argument(help="save_to_disk folder, parquet/json files, or a hub id")],
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    image_column: str = "image",
    question_column: str = "question",
    answer_column: str | None = None,
    id_column: str | None = None,
    split: str = "train",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """Any dataset with an image column and a question column -> prompts."""
    from vlpref.data.importers import import_hf
    from vlpref.data.store import write_records

    _fresh(out, overwrite)
    log = _rejects(on_error, rejects, out)
    prompts = import_hf(path, out, image_column, question_column, answer_column, id_column, split, rejects=log)
    _nothing(len(prompts), path, log)
    _report(write_records(out, "prompts", prompts), "prompts", out, log)


@import_app.command("trl")
def import_trl_cmd(
    path: Annotated[Path, typer.Argument(help="TRL vision dataset (save_to_disk folder or parquet)")],
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """TRL's vision preference (prompt/chosen/rejected/images) or messages/images format -> pairs or prompts."""
    from vlpref.data.importers import import_trl
    from vlpref.data.store import kind_of, write_records

    _fresh(out, overwrite)
    log = _rejects(on_error, rejects, out)
    records = import_trl(path, out, rejects=log)
    _nothing(len(records), path, log)
    kind = kind_of(records[0]) if records else "pairs"
    _report(write_records(out, kind, records), kind, out, log)


@export_app.command("trl")
def export_trl_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder of pairs or prompts")],
    out: Annotated[Path, typer.Argument(help="output folder")],
    format: Annotated[str, typer.Option(help="arrow (save_to_disk) or parquet")] = "arrow",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """TRL's vision format: conversational prompt/chosen/rejected (or messages) + images."""
    from vlpref.data.exporters import export_trl

    log = _rejects(on_error, rejects, out.parent / f"{out.name}-rejects")
    _report(export_trl(path, out, fmt=format, rejects=log), "rows", out, log)


@export_app.command("llamafactory")
def export_llamafactory_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder of pairs")],
    out: Annotated[Path, typer.Argument(help="output folder (data.json, images/, dataset_info.json)")],
    name: str = "vlpref_pairs",
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """LLaMA-Factory's sharegpt preference format with a dataset_info.json entry."""
    from vlpref.data.exporters import export_llamafactory

    log = _rejects(on_error, rejects, out.parent / f"{out.name}-rejects")
    _report(export_llamafactory(path, out, name=name, rejects=log), "pairs", out, log)


@data_app.command("validate")
def validate_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder")],
    on_error: OnErrorOpt = "raise",
    rejects: RejectsOpt = None,
):
    """Check every record and open every image, naming line, record and field of what is wrong.

    Exits 0 when all are valid; 2 at the first bad record (default), or 1 after listing all of them (skip)."""
    from vlpref.data.store import iter_records, read_meta

    log = _rejects(on_error, rejects, path.parent / f"{path.name}-rejects")
    kind = read_meta(path)["kind"]
    count = sum(1 for _ in iter_records(path, rejects=log, check_image_files=True))
    console.print(f"[green]{count} valid {kind}[/] in {path}")
    if log.count:
        console.print(f"[yellow]{log.count} bad record(s)[/]; reasons in {log.path}")
        log.close()
        raise typer.Exit(1)


@data_app.command("to-hf")
def to_hf_cmd(
    path: Annotated[Path, typer.Argument(help="dataset folder")],
    out: Annotated[Path, typer.Argument(help="output folder")],
    format: Annotated[str, typer.Option(help="arrow (save_to_disk) or parquet")] = "arrow",
):
    """Dataset folder -> Hugging Face datasets form (images embedded as image features)."""
    from vlpref.data.store import save_hf

    _report(save_hf(path, out, fmt=format), "records", out, None)


@data_app.command("from-hf")
def from_hf_cmd(
    path: Annotated[Path, typer.Argument(help="folder written by `data to-hf`")],
    out: Annotated[Path, typer.Argument(help="dataset folder to write")],
):
    """Hugging Face datasets form -> dataset folder (JSONL + images)."""
    from vlpref.data.store import load_hf

    _report(load_hf(path, out), "records", out, None)

