"""Everyday mistakes at the command line: each gets one line ("error: ..."), exit status 2, no traceback.

The commands run in-process through `vlpref.cli.main` (the console entry point), so an exception that is not a
VlprefError fails the test with its traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.data.conftest import vlfeedback_json  # noqa: F401  (fixture)
from vlpref.cli import main


def run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["vlpref", *args])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "60")  # narrow: the message must still be one line
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """One folder of each kind, from the VLFeedback fixture (imported, then paired), plus broken ones."""
    from tests.data.conftest import vlfeedback_rows, write_image
    from vlpref.data.importers import import_vlfeedback
    from vlpref.data.store import write_records
    from vlpref.pairs.build import PairsConfig, build_pairs

    root = tmp_path_factory.mktemp("kinds")
    write_image(root / "src" / "imgs" / "v1.png", (200, 0, 0))
    write_image(root / "src" / "imgs" / "v2.png", (0, 0, 200))
    (root / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in vlfeedback_rows()))
    p, c, a = import_vlfeedback(root / "v.jsonl", root / "ds" / "prompts", image_root=root / "src")
    write_records(root / "ds" / "prompts", "prompts", p)
    write_records(root / "ds" / "candidates", "candidates", c, prompts=str(root / "ds" / "prompts"))
    write_records(root / "ds" / "annotations", "annotations", a, candidates=str(root / "ds" / "candidates"),
                  prompts=str(root / "ds" / "prompts"))
    build_pairs(PairsConfig(annotations=str(root / "ds" / "annotations")), root / "ds" / "pairs", log=lambda *_: 0)
    (root / "empty").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "meta.json").write_text('{"kind": "prompts",')
    (root / "broken" / "records.jsonl").write_text("")
    return {"prompts": root / "ds" / "prompts", "candidates": root / "ds" / "candidates",
            "annotations": root / "ds" / "annotations", "pairs": root / "ds" / "pairs", "empty": root / "empty",
            "broken meta.json": root / "broken"}


# entry point -> (the kind of folder it needs, its arguments with FOLDER where the folder goes)
ENTRY_POINTS = {
    "sample --prompts": ("prompts", ["sample", "--prompts", "FOLDER", "--out", "OUT"]),
    "judge --candidates": ("candidates", ["judge", "--candidates", "FOLDER", "--out", "OUT"]),
    "judge --prompts": ("prompts", ["judge", "--candidates", "CANDIDATES", "--prompts", "FOLDER", "--out", "OUT"]),
    "pairs --annotations": ("annotations", ["pairs", "--strategy", "vlfeedback", "--annotations", "FOLDER",
                                            "--out", "OUT"]),
    "pairs --candidates (seva)": ("candidates", ["pairs", "--strategy", "seva", "--candidates", "FOLDER",
                                                 "--out", "OUT"]),
    "pairs --prompts (povid)": ("prompts", ["pairs", "--strategy", "povid", "--prompts", "FOLDER", "--out", "OUT"]),
    "sample --model": ("model", ["sample", "--prompts", "PROMPTS", "--model", "FOLDER", "--out", "OUT"]),
    "train --model": ("model", ["train", "--method", "sft", "--data", "PROMPTS", "--model", "FOLDER", "--out",
                                "OUT"]),
    "serve MODEL": ("model", ["serve", "FOLDER"]),
}
CASES = [(entry, kind) for entry, (needs, _) in ENTRY_POINTS.items()
         for kind in ("prompts", "candidates", "annotations", "pairs", "empty", "broken meta.json") if kind != needs]


@pytest.mark.parametrize(("entry", "kind"), CASES, ids=[f"{e} <- {k}" for e, k in CASES])
def test_every_entry_point_given_a_wrong_kind_of_folder_says_so_in_one_line(entry, kind, folders, tmp_path,
                                                                           monkeypatch, capsys):
    _, template = ENTRY_POINTS[entry]
    given = {"FOLDER": str(folders[kind]), "OUT": str(tmp_path / "out"), "PROMPTS": str(folders["prompts"]),
             "CANDIDATES": str(folders["candidates"])}
    line = one_line_error(*run(monkeypatch, capsys, *[given.get(a, a) for a in template]))
    assert str(folders[kind]) in line or Path(folders[kind]).name in line, line


def test_a_mistyped_world_name_fails_at_once_with_the_likely_name(folders, tmp_path, monkeypatch, capsys):
    line = one_line_error(*run(monkeypatch, capsys, "sample", "--prompts", str(folders["prompts"]), "--model",
                               "world-bsae", "--out", str(tmp_path / "out")))
    assert "world-bsae" in line and "did you mean world:world-base?" in line
    assert not (tmp_path / "out").exists()  # refused before anything was planned or journalled


def test_a_cached_hub_id_still_resolves_offline(tmp_path, monkeypatch):
    from vlpref.models.names import resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--org--tiny-vlm" / "snapshots" / "abc").mkdir(parents=True)
    assert resolve_model("org/tiny-vlm") == "org/tiny-vlm"
    with pytest.raises(Exception, match="not in the local Hugging Face cache"):
        resolve_model("org/other-vlm")


@pytest.mark.parametrize("args", [["serve", "--port", "99999"], ["serve", "--max-batch", "0"],
                                  ["serve", "--max-tokens-limit", "0"], ["view", "PAIRS", "--port", "99999"]])
def test_server_options_out_of_range_are_refused_before_starting(args, folders, monkeypatch, capsys):
    args = [str(folders["pairs"]) if a == "PAIRS" else a for a in args]
    line = one_line_error(*run(monkeypatch, capsys, *args))
    assert args[-2] in line  # names the option


def test_the_documented_vlfeedback_path_imports_then_pairs(vlfeedback_json, tmp_path, monkeypatch,  # noqa: F811
                                                           capsys):
    path, images = vlfeedback_json
    code, err = run(monkeypatch, capsys, "data", "import", "vlfeedback", str(path), "--images", str(images),
                    "--out", str(tmp_path / "vlf"))
    assert code == 0, err
    code, err = run(monkeypatch, capsys, "pairs", "--strategy", "vlfeedback", "--annotations",
                    str(tmp_path / "vlf" / "annotations"), "--out", str(tmp_path / "pairs"))
    assert code == 0, err
    meta = json.loads((tmp_path / "pairs" / "meta.json").read_text())
    assert meta["candidates"] == str((tmp_path / "vlf" / "candidates").resolve())


def test_pairs_from_annotations_that_are_all_missing_is_an_error(folders, tmp_path, monkeypatch, capsys):
    from vlpref.data.store import write_records

    write_records(tmp_path / "ann", "annotations", [], candidates=str(folders["candidates"]),
                  prompts=str(folders["prompts"]), incomplete=2)  # a judge run where every call failed
    line = one_line_error(*run(monkeypatch, capsys, "pairs", "--strategy", "vlfeedback", "--annotations",
                               str(tmp_path / "ann"), "--out", str(tmp_path / "pairs")))
    assert "no annotations" in line and "2 judge call(s) failed" in line


def test_pairs_that_find_only_single_answers_say_why(folders, tmp_path, monkeypatch, capsys):
    from vlpref.data.store import read_records, write_records

    annotations = [a for a in read_records(folders["annotations"]) if a.candidate_id.endswith(("/0", "/a"))]
    candidates = [c for c in read_records(folders["candidates"]) if c.id in {a.candidate_id for a in annotations}]
    write_records(tmp_path / "c", "candidates", candidates, prompts=str(folders["prompts"]))
    write_records(tmp_path / "a", "annotations", annotations, candidates=str(tmp_path / "c"),
                  prompts=str(folders["prompts"]))
    line = one_line_error(*run(monkeypatch, capsys, "pairs", "--strategy", "vlfeedback", "--annotations",
                               str(tmp_path / "a"), "--out", str(tmp_path / "pairs")))
    assert "fewer than two rated responses" in line


# -- no silent empty success ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("images", ["0", "-5"])
def test_world_generate_needs_at_least_one_scene(images, tmp_path, monkeypatch, capsys):
    line = one_line_error(*run(monkeypatch, capsys, "world", "generate", "--out", str(tmp_path / "w"), "--images",
                               images))
    assert "--images" in line


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_import_that_yields_nothing_is_an_error(on_error, tmp_path, monkeypatch, capsys):
    rows = [] if on_error == "raise" else [{"id": "a", "image": "missing.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat?"}]}]
    (tmp_path / "in.json").write_text(json.dumps(rows))
    line = one_line_error(*run(monkeypatch, capsys, "data", "import", "llava", str(tmp_path / "in.json"),
                               "--images", str(tmp_path), "--out", str(tmp_path / "ds"), "--on-error", on_error))
    assert ("no records" if on_error == "raise" else "every record was rejected") in line


def test_an_export_that_rejects_every_record_is_an_error_and_leaves_no_folder(folders, tmp_path, monkeypatch,
                                                                              capsys):
    import shutil

    shutil.copytree(folders["pairs"], tmp_path / "pairs")
    shutil.rmtree(tmp_path / "pairs" / "images")  # every pair's image is gone: every record is rejected
    line = one_line_error(*run(monkeypatch, capsys, "data", "export", "trl", str(tmp_path / "pairs"),
                               str(tmp_path / "trl"), "--on-error", "skip"))
    assert "every record was rejected" in line and not (tmp_path / "trl").exists()


def test_import_into_a_folder_that_holds_something_refuses_unless_overwrite(folders, tmp_path, monkeypatch,
                                                                            capsys):
    from tests.data.conftest import write_image

    write_image(tmp_path / "imgs" / "a.png")
    (tmp_path / "in.json").write_text(json.dumps([{"id": "a", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat?"}]}]))
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    args = ["data", "import", "llava", str(tmp_path / "in.json"), "--images", str(tmp_path / "imgs"), "--out",
            str(tmp_path / "ds")]
    assert "--overwrite" in one_line_error(*run(monkeypatch, capsys, *args))
    assert run(monkeypatch, capsys, *args, "--overwrite")[0] == 0


def test_sample_n_is_honoured_or_refused(folders, tmp_path, monkeypatch, capsys):
    line = one_line_error(*run(monkeypatch, capsys, "sample", "--prompts", str(folders["prompts"]), "--model",
                               "world:world-base", "--n", "0", "--out", str(tmp_path / "a")))
    assert "n" in line and not (tmp_path / "a" / "records.jsonl").exists()  # not the default 2
    line = one_line_error(*run(monkeypatch, capsys, "sample", "--prompts", str(folders["prompts"]), "--n", "3",
                               "--out", str(tmp_path / "b")))
    assert "--n applies with --model" in line


def test_sample_into_another_dataset_refuses_unless_overwrite(folders, tmp_path, monkeypatch, capsys):
    from vlpref.candidates.sample import SampleConfig
    from vlpref.errors import VlprefError
    from vlpref.prefs import check_sample_out

    line = one_line_error(*run(monkeypatch, capsys, "sample", "--prompts", str(folders["prompts"]), "--model",
                               "world:world-base", "--out", str(folders["pairs"])))
    assert "holds pairs" in line and "--overwrite" in line
    config = SampleConfig(prompts=str(folders["prompts"]))
    with pytest.raises(VlprefError, match="other settings"):  # another run's candidates (the imported ones)
        check_sample_out(folders["candidates"], config)
    check_sample_out(tmp_path / "new", config)  # a new folder is fine


def test_a_seva_recipe_without_augment_is_refused_before_sampling(folders, tmp_path, monkeypatch, capsys):
    (tmp_path / "seva.yaml").write_text(f"recipe: preference-data\nmethod: seva\nsample:\n  prompts: "
                                        f"{folders['prompts']}\npairs:\n  strategy: seva\n")
    line = one_line_error(*run(monkeypatch, capsys, "prefs", "--config", str(tmp_path / "seva.yaml"), "--out",
                               str(tmp_path / "b")))
    assert "augment" in line and not (tmp_path / "b" / "candidates").exists()
