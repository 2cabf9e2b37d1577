"""Security: no API key in any log, output, journal or error message; servers bind to 127.0.0.1 unless told;
image paths stay inside their roots; no pickle or unsafe torch.load of user files."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.reliability.harness import FIGURES, VLPREF, ScriptedEndpoint, write_yaml
from tests.reliability.test_crash_resume import judge_reply
from tests.reliability.test_faulty_endpoint import prompts_and_candidates
from vlpref.serve import build_app, serve_in_thread

SRC = Path(__file__).resolve().parents[2] / "src" / "vlpref"


def echoing_gateway(upstream: str) -> FastAPI:
    """Forwards to `upstream`, except every third request: a 401 that echoes the key it was sent, as a misbehaving
    gateway (or OpenAI's own "Incorrect API key provided: ...") does."""
    app = FastAPI()
    app.state.n = 0

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        app.state.n += 1
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if app.state.n % 3 == 0:
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {key}. Sent: {key[:12]}..."}},
                                status_code=401)
        body = await request.body()
        forwarded = urllib.request.Request(upstream + "/chat/completions", data=body, method="POST",
                                           headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(forwarded, timeout=30) as response:
                return Response(response.read(), media_type="application/json")
        except urllib.error.HTTPError as error:
            return Response(error.read(), status_code=error.code, media_type="application/json")

    return app


def test_no_api_key_is_written_anywhere(tmp_path):
    key = "sk-vlpref-canary-" + secrets.token_hex(16)
    key_file = tmp_path / "secret" / "key.txt"
    key_file.parent.mkdir()
    key_file.write_text(key + "\n")
    prompts, cands = prompts_and_candidates(tmp_path, n=12)
    outputs = []
    mmhal = tmp_path / "mmhal"
    (mmhal / "images").mkdir(parents=True)
    shutil.copy(prompts / "images" / "a.png", mmhal / "images" / "a.png")
    (mmhal / "response_template.json").write_text(json.dumps([
        {"question_type": t, "image_id": str(i), "image_src": "http://h/a.png", "image_content": ["Blue"],
         "question": f"What is it ({i})?", "gt_answer": "Blue.", "model_answer": ""}
        for i, t in enumerate(("attribute", "adversarial", "comparison", "counting"))]))

    def reply(text: str, tag: str) -> str:  # a rubric judge for `judge`, an MMHal rater for `eval`
        return judge_reply(text, tag) if "## Annotation" in text else "Fine.\nRating: 4"

    with serve_in_thread(build_app("m", ScriptedEndpoint(reply, delay=0.0))) as upstream:
        with serve_in_thread(echoing_gateway(upstream)) as url:
            endpoint = {"base_url": url, "model": "m", "api_key_env": "VLPREF_CANARY_KEY", "max_retries": 0}
            judge = write_yaml(tmp_path / "judge.yaml", {"backend": "openai", "structured": "off",
                                                         "endpoint": endpoint})
            from_file = {**endpoint, "api_key_env": None, "api_key_file": str(key_file)}
            sample = write_yaml(tmp_path / "sample.yaml", {"prompts": str(prompts), "pool": [
                {"model": "m", "backend": "openai", "endpoint": from_file, "n": 1}]})
            for cmd in ([*VLPREF, "judge", "--config", str(judge), "--candidates", str(cands), "--out",
                         str(tmp_path / "out" / "judged")],
                        [*VLPREF, "sample", "--config", str(sample), "--out", str(tmp_path / "out" / "sampled")],
                        [*VLPREF, "eval", "--benchmark", "mmhal", "--data", str(mmhal), "--max-new-tokens", "4",
                         "--judge-url", url, "--judge-model", "m", "--judge-key-env", "VLPREF_CANARY_KEY",
                         "--out", str(tmp_path / "out" / "eval")]):
                result = subprocess.run(cmd, capture_output=True, text=True, env={
                    **__import__("os").environ, "VLPREF_CANARY_KEY": key})
                assert result.returncode == 2, result.stderr[-2000:]  # the 401s are failures, listed with reasons
                outputs += [result.stdout, result.stderr]
    failed = (tmp_path / "out" / "judged" / "failed.jsonl").read_text()
    assert "HTTP 401: Incorrect API key provided: ***" in failed  # the reason is kept, the key is not
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    FIGURES["security_files_scanned"] += len(written)
    secret = key.removeprefix("sk-vlpref-canary-")  # the random part: any 10 characters of it in a row is a leak
    pieces = [secret[i : i + 10] for i in range(0, len(secret) - 9, 5)]
    leaks = [str(p) for p in written if any(piece.encode() in p.read_bytes() for piece in pieces)]
    leaks += [f"output {i}" for i, text in enumerate(outputs) if any(piece in text for piece in pieces)]
    FIGURES["security_key_leaks"] += len(leaks)
    assert not leaks, f"the API key was written to {leaks}"


def test_servers_bind_to_localhost_unless_told():
    import inspect

    from vlpref import serve
    from vlpref.cli import stages as cli
    from vlpref.view import app as view

    assert inspect.signature(serve.serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve.serve_in_thread).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(cli.serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(view.serve).parameters["host"].default == "127.0.0.1"  # the viewer
    assert inspect.signature(cli.view).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("relative", ["../outside.png", "/etc/passwd", "a/../../outside.png", ""])
def test_image_paths_stay_inside_their_root(tmp_path, relative):
    from vlpref.data.images import load_image
    from vlpref.errors import RecordError

    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "outside.png").write_bytes(b"not read")
    with pytest.raises(RecordError, match="must be relative|leaves the dataset root"):
        load_image(root, relative, file=root / "records.jsonl", record_id="r1", field="images[0]")


UNSAFE = {
    r"\bimport pickle\b|\bfrom pickle\b|\bpickle\.load|\bimport dill\b|\bjoblib\.load": "pickle",
    r"torch\.load\((?![^)]*weights_only=True)": "torch.load without weights_only=True",
    r"allow_pickle\s*=\s*True": "numpy allow_pickle",
    r"\byaml\.(?:load|load_all|unsafe_load|full_load)\(": "yaml.load (use safe_load)",
    r"(?<![\w.])eval\(|(?<![\w.])exec\(": "eval/exec",
    r"trust_remote_code\s*[:=]\s*(?:bool\s*=\s*)?True": "trust_remote_code on by default",
}


def test_no_unsafe_deserialization_in_the_source():
    files = sorted(SRC.rglob("*.py"))
    FIGURES["security_source_files_scanned"] += len(files)
    found = []
    for path in files:
        for number, line in enumerate(path.read_text().split("\n"), start=1):
            code = line.split("#", 1)[0]
            found += [f"{path.relative_to(SRC)}:{number}: {what}" for pattern, what in UNSAFE.items()
                      if re.search(pattern, code)]
    assert not found, "\n".join(found)
    # the checkpoints this project writes are safetensors + tensors-only state read back with weights_only=True
    assert "weights_only=True" in (SRC / "training" / "checkpoint.py").read_text()


def test_key_files_and_environment_are_the_only_key_sources():
    """A config never holds a key: RemoteEndpoint has no field for one, and an unknown `api_key` key is refused."""
    from vlpref.config import parse
    from vlpref.errors import ConfigError
    from vlpref.models.remote import RemoteEndpoint

    assert not any("key" == f or f == "api_key" for f in RemoteEndpoint.model_fields)
    with pytest.raises(ConfigError, match="unknown key 'api_key'"):
        parse(RemoteEndpoint, {"base_url": "http://x/v1", "model": "m", "api_key": "sk-123"})
    assert "sk-123" not in json.dumps(RemoteEndpoint(base_url="http://x/v1", model="m").model_dump())
