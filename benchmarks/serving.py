"""Serving several adapters of one backbone: one mixed batch (`adapter_names`) against one call per adapter.

    python benchmarks/serving.py                      # CLIP ViT-B/16 size, 4 adapters, 32 pairs, this machine's CPU
    python benchmarks/serving.py --size tiny --steps 1   # seconds: checks the script itself

Random weights (speed does not depend on them), inference (no grad), each time the median of --steps after a
warm-up call, both sides of a ratio measured in the same run. Two ways a service meets several adapters:

- *one adapter per pair* (requests of several customers): a mixed batch of the N pairs against one call per adapter
  on its own pairs. The work is the same; what a mixed batch saves is the regrouping and the small batches.
- *every adapter on every pair* (several tasks asked of the same pairs): a mixed batch of the N pairs once per
  adapter (the extraction layers run once per distinct pair) against one call per adapter on all N pairs.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from datetime import date
from pathlib import Path

import torch
from efficiency import NUM_LABELS, build_backbone, make_batch
from peft import get_peft_model

from mitp_peft import MITPConfig
from mitp_peft.mixed import as_integers, distinct_rows


def adapters(size: str, count: int, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """The backbone with `count` default adapters, named a0, a1, ..."""
    torch.manual_seed(0)
    model = get_peft_model(build_backbone(size).to(device, dtype), MITPConfig(num_labels=NUM_LABELS), "a0")
    for index in range(1, count):
        model.add_adapter(f"a{index}", MITPConfig(num_labels=NUM_LABELS))
    return model.eval()


def timed(call, steps: int, device: str) -> float:
    times = []
    for step in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.no_grad():
            call()
        if device == "cuda":
            torch.cuda.synchronize()
        if step:  # the first call warms up
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def distinct_rows_by_fingerprint(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A candidate for `distinct_rows`, timed beside it: rows grouped by two fixed random projections of their bits
    (`torch.unique` over 2 columns rather than over every value of an image), then checked bit for bit; the package
    keeps `torch.unique` over whole rows until a GPU run shows which is faster."""
    representative, inverse = distinct_rows(rows.to(torch.float64) @ _probe(rows.shape[1], rows.device))
    if not torch.equal(rows[representative][inverse], rows):  # two different rows with one fingerprint
        return distinct_rows(rows)
    return representative, inverse


@functools.cache
def _probe(width: int, device: torch.device) -> torch.Tensor:
    """The fingerprint's projections, made once per width and device: outside the timed grouping."""
    return torch.rand(width, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(device)


def measure(size: str, batch: int, count: int, steps: int, device: str, dtype: str) -> dict:
    torch_dtype = getattr(torch, dtype)
    model = adapters(size, count, device, torch_dtype)
    names = [f"a{i}" for i in range(count)]
    pairs = make_batch(size, batch, device, torch_dtype)
    own = [name for name in names for _ in range(batch // count)]  # pair i belongs to one adapter
    groups = {name: torch.tensor([i for i, n in enumerate(own) if n == name], device=device) for name in names}

    def one_call_per_adapter(rows: dict, index: dict) -> None:
        for name in names:
            model.set_adapter(name)
            model(**{k: v[index[name]] for k, v in rows.items()})

    everything = {name: torch.arange(batch, device=device) for name in names}
    repeated = {k: torch.cat([v] * count) for k, v in pairs.items()}
    every = [name for name in names for _ in range(batch)]
    seconds = {
        "one adapter per pair, mixed batch": timed(lambda: model(**pairs, adapter_names=own), steps, device),
        "one adapter per pair, one call per adapter": timed(
            lambda: one_call_per_adapter(pairs, groups), steps, device
        ),
        "every adapter on every pair, mixed batch": timed(
            lambda: model(**repeated, adapter_names=every), steps, device
        ),
        "every adapter on every pair, one call per adapter": timed(
            lambda: one_call_per_adapter(pairs, everything), steps, device
        ),
    }
    # Inside the second mixed batch: finding its repeated images (each pair's image comes once per adapter).
    images = as_integers(repeated["pixel_values"].reshape(len(every), -1))
    grouping_s = timed(lambda: distinct_rows(images), steps, device)
    fingerprint_s = timed(lambda: distinct_rows_by_fingerprint(images), steps, device)
    first_of_group = [r[i] for r, i in (distinct_rows(images), distinct_rows_by_fingerprint(images))]
    if not torch.equal(*first_of_group):  # the same groups (their numbering may differ)
        raise RuntimeError("the fingerprint grouping differs from torch.unique's")
    answers = {"one adapter per pair": batch, "every adapter on every pair": batch * count}
    rows = []
    for scenario, answered in answers.items():
        mixed, separate = seconds[f"{scenario}, mixed batch"], seconds[f"{scenario}, one call per adapter"]
        rows.append(
            {
                "scenario": scenario,
                "answers": answered,
                "mixed_s": mixed,
                "separate_s": separate,
                "mixed_per_s": answered / mixed,
                "separate_per_s": answered / separate,
                "speedup": separate / mixed,
            }
        )
    return {"size": size, "batch": batch, "adapters": count, "device": device, "dtype": dtype, "rows": rows,
            "grouping_s": grouping_s, "fingerprint_s": fingerprint_s}  # fmt: skip


def markdown(result: dict, machine: str) -> str:
    lines = [
        f"**CLIP {result['size']} size, {result['adapters']} adapters, {result['batch']} pairs, {result['dtype']}, "
        f"{result['device']} ({machine}), {date.today()}**",
        "",
        "| scenario | answers | mixed batch | answers/s | one call per adapter | answers/s | mixed / separate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scenario']} | {r['answers']} | {r['mixed_s']:.2f} s | {r['mixed_per_s']:.1f} "
            f"| {r['separate_s']:.2f} s | {r['separate_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    grouping, every = result["grouping_s"], result["rows"][-1]["mixed_s"]
    lines += [
        "",
        f"Finding the repeated images of the every-adapter batch (`distinct_rows`): {grouping:.3f} s of its "
        f"{every:.2f} s; by fingerprint (the candidate): {result['fingerprint_s']:.3f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="b16")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    if args.batch % args.adapters:
        parser.error("--batch must be a multiple of --adapters")
    result = measure(args.size, args.batch, args.adapters, args.steps, args.device, args.dtype)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(markdown(result, machine))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(result, machine=machine), indent=2))


if __name__ == "__main__":
    main()
