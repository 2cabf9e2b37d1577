"""`vlpref bench train-all`: every objective and method vlpref trains, a few steps each, on one layout.

    vlpref bench train-all --json runs/bench-train-all.json                     # CPU: the tiny layout
    vlpref bench train-all --layout qwen2-vl-2b --dtype bfloat16 --batch-size 4 --steps 4    # one GPU, ~3 min

One model of the layout is built (random weights, on the device) and saved; each run loads it, trains `steps`
optimizer steps on the same synthetic pairs (`bench.dpo.build_inputs`: one image and two ~`answer_words`-word answers
each) and reports its losses (all must be finite), its step times, its peak memory and what trained. The runs
(`RUNS`) cover the DPO family's objectives (dpo, povid, mdpo), the reference kept online, gradient checkpointing,
full fine-tuning (language model + projector; the `tiny` layout: every weight) and the SFT methods (sft, rs, steerlm:
one loop, NLL on the target answer, here the chosen side; the methods differ in the data their recipes build).
LoRA is r16 α32 on the language model's linear layers, as the recipes use. The runs in `EXPORTED` also export their
model (LoRA merged into a standard model folder), which is loaded again and answers one prompt greedily
(random weights: the text is noise, or empty; what is checked is that it loads and generates).

Keys: `runs` (one entry per run: `losses`, `finite`, `step_seconds`, `median_step_s` (the first step excluded),
`peak_mem_mb`, `trainable_parameters`, for exported runs `export` {`load_s`, `generated_tokens`, `text`}; a run that
ran out of device memory holds only `error`, and the others still run), `errors` (those runs' names), `all_finite`,
`all_exported_generate`, `device`, `model`, `versions`.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vlpref.bench.dpo import Setup, build_inputs, timed_steps, train_config
from vlpref.bench.layouts import LAYOUTS, Layout
from vlpref.bench.measure import device_name, offline_environment, peak_mb, pick_device, release, reset_peak, sync

# run name -> (finetune, TrainConfig keys beyond the shared ones)
RUNS: dict[str, tuple[str, dict]] = {
    "dpo": ("lora", {}),
    "dpo-reference-online": ("lora", {"reference": "online"}),
    "dpo-gradient-checkpointing": ("lora", {"gradient_checkpointing": True}),
    "dpo-full": ("full", {}),
    "povid": ("lora", {"objective": "povid"}),
    "mdpo": ("lora", {"objective": "mdpo"}),
    "sft": ("lora", {"method": "sft"}),
    "rs": ("lora", {"method": "rs"}),
    "steerlm": ("lora", {"method": "steerlm"}),
}
EXPORTED = ("dpo", "dpo-full")  # one LoRA export (merged) and one full one: loaded again, and they generate


def _generate_once(model_dir: Path, pairs: Path, dtype: str, device: str) -> dict:
    """Load an exported model folder and answer the first pair's prompt greedily (8 new tokens)."""
    from vlpref.data.images import load_record_images
    from vlpref.data.schema import DecodingParams
    from vlpref.data.store import iter_records
    from vlpref.models.vlm import VLM, Chat

    began = time.perf_counter()
    vlm = VLM.load(str(model_dir), dtype=dtype, device=device)
    load_s = time.perf_counter() - began
    record = next(iter(iter_records(pairs)))
    chat = Chat(record.turns, load_record_images(pairs, record))
    answer = vlm.generate([chat], DecodingParams(temperature=0.0, max_new_tokens=8))[0]
    return {"load_s": load_s, "generated_tokens": len(answer.token_ids), "text": answer.text,
            "finish_reason": answer.finish_reason}


def train_one(name: str, setup: Setup, inputs: dict, steps: int, out: Path) -> dict:
    """One run of `RUNS`: its losses, step times, peak memory; exported runs also load and generate."""
    from vlpref.training.trainer import Trainer

    finetune, extra = RUNS[name]
    setup = Setup(setup.layout, finetune, setup.dtype, setup.batch, setup.device, lora_r=16, lora_alpha=32.0)
    config = train_config(setup, inputs["pairs"], inputs["policy"], steps, method=extra.get("method", "dpo"),
                          **{k: v for k, v in extra.items() if k != "method"})
    reset_peak(setup.device)
    trainer = Trainer(config, out, resume=False, log=lambda *a: None)
    seconds, results = timed_steps(trainer, steps, setup.device)
    sync(setup.device)
    losses = [r.loss for r in results]
    found = {"losses": losses, "finite": all(math.isfinite(x) for x in losses),
             "step_seconds": [round(s, 4) for s in seconds],
             "median_step_s": statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0],
             "peak_mem_mb": peak_mb(setup.device), "reference_seconds": trainer.reference_seconds,
             "trainable_parameters": sum(p.numel() for p in trainer.trainable.parameters() if p.requires_grad)}
    if name in EXPORTED:
        trainer.export()
        del trainer
        release(setup.device)
        found["export"] = _generate_once(out / "model", inputs["pairs"], setup.dtype, setup.device)
    return found


def bench_train_all(layout: str | Layout = "tiny", dtype: str = "float32", batch: int = 4, steps: int = 4,
                    device: str | None = None, threads: int | None = 2, answer_words: int = 60,
                    runs: tuple[str, ...] | None = None, work: Path | None = None) -> dict:
    import transformers

    device = pick_device(device)
    layout = LAYOUTS[layout] if isinstance(layout, str) else layout
    unknown = set(runs or ()) - set(RUNS)
    if unknown:
        raise ValueError(f"unknown run(s) {sorted(unknown)}; choose from {', '.join(RUNS)}")
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    offline_environment()
    setup = Setup(layout, "lora", dtype, batch, device)
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work or tmp)
        inputs = build_inputs(root, pairs=batch * steps, answer_words=answer_words, layout=layout, device=device,
                              dtype=dtype, other=False)
        for name in runs or tuple(RUNS):
            try:
                found[name] = train_one(name, setup, inputs, steps, root / name)
            except torch.OutOfMemoryError as error:  # e.g. full fine-tuning of a 7B layout: the other runs go on
                found[name] = {"error": f"out of memory: {str(error).splitlines()[0]}"}
            release(device)
    done = [r for r in found.values() if "error" not in r]
    exported = [r["export"] for r in done if "export" in r]
    return {
        "device": device_name(device),
        "model": f"{layout.name} layout ({layout.source}; {layout.image_tokens} image tokens, ~{answer_words}-word "
                 f"answers), {dtype}, LoRA r16 unless the run says full",
        "layout": layout.name, "dtype": dtype, "batch_size": batch, "steps": steps,
        "build_seconds": inputs["build_seconds"],
        "all_finite": all(r["finite"] for r in done), "errors": [n for n, r in found.items() if "error" in r],
        "all_exported_generate": bool(exported) and all(e["finish_reason"] in ("stop", "length") for e in exported),
        "runs": found,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
