"""Model fingerprints key every cache of model outputs (reference log-probs, evaluation answers): they must change
when the files a load reads change, local folder or hub snapshot alike."""

from __future__ import annotations

from vlpref.models.fingerprint import model_fingerprint


def test_a_local_folder_is_hashed_by_content(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    first = model_fingerprint(str(tmp_path), None, "float32")
    assert model_fingerprint(str(tmp_path), None, "bfloat16") != first  # the dtype is part of it
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert model_fingerprint(str(tmp_path), None, "float32") != first


def test_a_hub_id_is_hashed_through_its_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text('{"a": 1}')
    first = model_fingerprint("org/tiny", None, "float32")
    (snapshot / "config.json").write_text('{"a": 2}')  # an upstream update pulled into the cache
    assert model_fingerprint("org/tiny", None, "float32") != first
    # not cached at all: keyed by id + revision, and no download is attempted
    assert model_fingerprint("org/absent", None, "float32") == model_fingerprint("org/absent", None, "float32")
    assert model_fingerprint("org/absent", "v2", "float32") != model_fingerprint("org/absent", None, "float32")
