"""`vlpref view PATH [PATH2]`: a local, read-only web page for preference data and evaluation runs.

    vlpref view runs/vlfeedback/pairs                      # pairs: filters, pages, one pair in full
    vlpref view runs/eval/base                             # an evaluation run: results, plots, every item
    vlpref view runs/eval/base runs/eval/seva --port 8766  # two runs side by side, with their differences

PATH is a pairs folder (or a `vlpref prefs` output holding one in pairs/), or an evaluation run folder (results.json,
items.jsonl). Pages are rendered on the server by Jinja2 with autoescaping, so every piece of model, judge or dataset
text reaches the browser as text, never as markup; the pages carry no script at all, and a Content-Security-Policy
forbids scripts, so even a bug in escaping could not run one. Images are served by record and position
(/image/pair/<row>/<side>/<k>), never by a path from the URL, and only from inside the dataset root (pairs) or the
run's data and images folders (evaluation). Every route is GET: nothing can be written. The server binds to
127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from vlpref.data.files import inside, read_jsonl
from vlpref.data.images import resolve_image
from vlpref.errors import VlprefError
from vlpref.view.index import Filters, PairIndex, word_diff

PAGE_SIZE = 50
CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")


def _templates():
    from jinja2 import Environment, PackageLoader

    # autoescape=True for every template: all text is escaped unless a template says otherwise (none does)
    env = Environment(loader=PackageLoader("vlpref.view", "templates"), autoescape=True)
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return env


def _int(value: str | None, default: int, low: int = 0) -> int:
    try:
        return max(low, int(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def build_app(paths: list[str | Path], page_size: int = PAGE_SIZE, log=print,
              hosts: list[str] | None = None) -> FastAPI:
    """The viewer for one pairs folder, or one or two evaluation run folders. `hosts`: the Host headers answered
    (default: 127.0.0.1 and localhost), so a web page elsewhere cannot read the viewer through DNS rebinding."""
    paths = [Path(p) for p in paths]
    if not paths or len(paths) > 2:
        raise VlprefError("view: give a pairs folder, or one or two evaluation run folders")
    for path in paths:
        if not path.is_dir():
            raise VlprefError(f"view: {path} is not a folder")
    env = _templates()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # no interactive API pages: HTML only
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or ["127.0.0.1", "localhost"])

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def render(name: str, **context) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context))

    if all((p / "results.json").is_file() for p in paths):
        _eval_routes(app, paths, render, page_size)
    elif len(paths) == 1:
        root = paths[0] / "pairs" if (paths[0] / "pairs" / "records.jsonl").is_file() else paths[0]
        try:
            index = PairIndex.open(root, log=log)
        except ValueError as error:
            hint = "" if "line" in str(error) else "; or an evaluation run folder (results.json)"
            raise VlprefError(f"view: {error}{hint}") from None
        _pair_routes(app, index, render, page_size)
    else:
        raise VlprefError("view: two folders must both be evaluation runs (results.json)")
    return app


def _pair_routes(app: FastAPI, index: PairIndex, render, page_size: int) -> None:
    @app.get("/", response_class=HTMLResponse)
    def pairs(strategy: str | None = None, margin: str | None = None, failures: str | None = None,
              q: str | None = None, page: str | None = None):
        filters = Filters(strategy=strategy or None, min_margin=_float(margin), parse_failures=failures == "1",
                          search=(q or "").strip() or None)
        number = _int(page, 0)
        rows, total = index.page(filters, number, page_size)
        pages = max(1, math.ceil(total / page_size))
        query = {k: v for k, v in (("strategy", strategy), ("margin", margin), ("failures", failures), ("q", q))
                 if v}
        link = {name: "?" + urlencode({**query, "page": p}) for name, p in
                (("prev", number - 1), ("next", number + 1)) if 0 <= p < pages}
        for row in rows:
            row["diff"] = word_diff(row["rejected"], row["chosen"])
        return render("pairs.html", root=str(index.root), rows=rows, total=total, size=len(index), page=number,
                      pages=pages, link=link, strategies=index.strategies(), filters=filters, margin=margin or "",
                      annotated=index.annotations is not None)

    @app.get("/pair/{row}", response_class=HTMLResponse)
    def pair(row: int):
        record = index.row(row)
        if record is None:
            raise HTTPException(status_code=404, detail="no such pair")
        scores = {side: json.loads(record[f"{side}_scores"]) for side in ("chosen", "rejected")}
        aspects = sorted(set(scores["chosen"]) | set(scores["rejected"]))
        images = {"chosen": json.loads(record["images"]),
                  "rejected": json.loads(record["rejected_images"]) if record["rejected_images"] else None}
        return render("pair.html", pair=record, diff=word_diff(record["rejected"], record["chosen"]),
                      scores=scores, aspects=aspects, images=images, provenance=json.loads(record["provenance"]),
                      annotations={"chosen": index.annotation(record["chosen_candidate"]),
                                   "rejected": index.annotation(record["rejected_candidate"])},
                      next_row=row + 1 if row + 1 < len(index) else None, prev_row=row - 1 if row else None)

    @app.get("/image/pair/{row}/{side}/{k}")
    def pair_image(row: int, side: str, k: int):
        record = index.row(row)
        if record is None or side not in ("chosen", "rejected"):
            raise HTTPException(status_code=404, detail="no such image")
        field = "rejected_images" if side == "rejected" and record["rejected_images"] else "images"
        names = json.loads(record[field])
        try:  # the dataset's own rule: relative, inside the root (vlpref.data.images)
            path = resolve_image(index.root, names[k]) if 0 <= k < len(names) else None
        except ValueError:
            path = None
        if path is None or not path.is_file():
            raise HTTPException(status_code=404, detail="no such image")
        return FileResponse(path)


def _load_run(folder: Path) -> dict:
    from vlpref.evaluation.report import load_run

    results = load_run(folder)
    items = read_jsonl(folder / "items.jsonl", "items") if (folder / "items.jsonl").is_file() else []
    roots = [Path(r) for r in (results.get("data_folder"), results.get("images_folder")) if r]
    plots = sorted(p.name for p in folder.glob("*.png"))
    return {"name": folder.name, "folder": folder, "results": results, "items": items, "roots": roots,
            "plots": plots, "by_id": {item["id"]: i for i, item in enumerate(items)}}


def _eval_routes(app: FastAPI, folders: list[Path], render, page_size: int) -> None:
    from vlpref.evaluation.report import arrow, numeric_metrics

    runs = [_load_run(folder) for folder in folders]
    if len(runs) == 2 and runs[0]["name"] == runs[1]["name"]:
        runs[1]["name"] += " (2)"

    @app.get("/", response_class=HTMLResponse)
    def overview(q: str | None = None, wrong: str | None = None, page: str | None = None):
        numbers = [numeric_metrics(run["results"]) for run in runs]
        metrics = [m for m in numbers[0] if all(m in n for n in numbers)]
        table = [{"metric": m + arrow(m), "values": [n[m] for n in numbers],
                  "delta": numbers[1][m] - numbers[0][m] if len(runs) == 2 else None} for m in metrics]
        first = runs[0]
        search = (q or "").strip().lower()
        chosen = []
        for i, item in enumerate(first["items"]):
            other = runs[1]["items"][runs[1]["by_id"][item["id"]]] if len(runs) == 2 and item["id"] in runs[1][
                "by_id"] else None
            if other is not None and other.get("prompt") != item.get("prompt"):
                other = {**other, "answer": f"[a different question under this id: {other.get('prompt')}] "
                                            f"{other.get('answer')}"}
            texts = (item.get("prompt"), item.get("answer"), other.get("answer") if other else None)
            if search and not any(search in str(v).lower() for v in texts if v is not None):
                continue
            if wrong == "1" and item.get("correct") is not False and not (
                    other is not None and other.get("answer") != item.get("answer")):
                continue
            chosen.append((i, item, other))
        number = _int(page, 0)
        pages = max(1, math.ceil(len(chosen) / page_size))
        query = {k: v for k, v in (("q", q), ("wrong", wrong)) if v}
        link = {name: "?" + urlencode({**query, "page": p}) for name, p in
                (("prev", number - 1), ("next", number + 1)) if 0 <= p < pages}
        return render("run.html", runs=runs, table=table, items=chosen[number * page_size:(number + 1) * page_size],
                      total=len(chosen), page=number, pages=pages, link=link, q=q or "", wrong=wrong == "1")

    @app.get("/item/{n}", response_class=HTMLResponse)
    def item(n: int):
        first = runs[0]
        if not 0 <= n < len(first["items"]):
            raise HTTPException(status_code=404, detail="no such item")
        entry = first["items"][n]
        sides = [(0, n, entry)]
        if len(runs) == 2 and entry["id"] in runs[1]["by_id"]:
            m = runs[1]["by_id"][entry["id"]]
            sides.append((1, m, runs[1]["items"][m]))
        shown = ("prompt", "images", "answer", "judge", "id")
        extra = [{k: v for k, v in side.items() if k not in shown} for _, _, side in sides]
        diff = word_diff(sides[0][2].get("answer", ""), sides[1][2].get("answer", "")) if len(sides) == 2 else None
        return render("item.html", runs=runs, item=entry, sides=sides, extra=extra, diff=diff,
                      prev_n=n - 1 if n else None, next_n=n + 1 if n + 1 < len(first["items"]) else None)

    @app.get("/image/item/{run}/{n}/{k}")
    def item_image(run: int, n: int, k: int):
        if not 0 <= run < len(runs) or not 0 <= n < len(runs[run]["items"]):
            raise HTTPException(status_code=404, detail="no such image")
        images = runs[run]["items"][n].get("images") or []
        if not 0 <= k < len(images):
            raise HTTPException(status_code=404, detail="no such image")
        for root in runs[run]["roots"]:  # as written ('..' refused, the user's own symlinks followed)
            if inside(images[k], root) and (Path(root) / images[k]).is_file():
                return FileResponse(Path(root) / images[k])
        raise HTTPException(status_code=404, detail="no such image")

    @app.get("/plot/{run}/{name}")
    def plot(run: int, name: str):
        if not 0 <= run < len(runs) or name not in runs[run]["plots"]:  # only the PNGs the run folder holds
            raise HTTPException(status_code=404, detail="no such plot")
        return FileResponse(runs[run]["folder"] / name)


def serve(paths: list[str | Path], host: str = "127.0.0.1", port: int = 8765, log=print) -> None:
    import uvicorn

    if not 1 <= port <= 65535:  # uvicorn would fail with a traceback
        raise VlprefError(f"--port must be from 1 to 65535, not {port}")

    # bound to all interfaces the Host header can be any of the machine's names; the user chose to expose it
    hosts = ["*"] if host in ("0.0.0.0", "::") else sorted({host, "127.0.0.1", "localhost"})
    app = build_app(paths, log=log, hosts=hosts)
    log(f"vlpref view on http://{host}:{port}/ (read-only; Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
