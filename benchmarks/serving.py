"""Serving several adapters of one backbone: fan-out and per-sample mixed batches against one call per adapter.

    python benchmarks/serving.py                      # CLIP ViT-B/16 size, 4 adapters, 32 pairs, this machine's CPU
    python benchmarks/serving.py --size tiny --steps 1   # seconds: checks the script itself

Random weights (speed does not depend on them), inference (no grad); the two sides of each ratio are called in
alternation, --steps times after a warm-up call each, and a ratio is the median of the pairs' ratios. Two ways a
service meets several adapters:

- *every adapter on every pair* (several tasks asked of the same pairs): `model.fan_out(adapters=[...])` against
  one call per adapter on all N pairs (`set_adapter`, then the model). The layers below the interaction layers run
  once instead of once per adapter: with 4 of 12 layers per tower interacting and 4 adapters, at most about 2x.
- *one adapter per pair* (requests of several customers): a mixed batch (`adapter_names=[...]`) of the N pairs
  against one call per adapter on its own pairs. The work is the same; what a mixed batch saves is the regrouping
  and the small batches.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import torch
from efficiency import NUM_LABELS, build_backbone, make_batch
from peft import get_peft_model

from mitp_bench.measure import paired, timed
from mitp_peft import MITPConfig


def adapters(size: str, count: int, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """The backbone with `count` default adapters, named a0, a1, ..."""
    torch.manual_seed(0)
    model = get_peft_model(build_backbone(size).to(device, dtype), MITPConfig(num_labels=NUM_LABELS), "a0")
    for index in range(1, count):
        model.add_adapter(f"a{index}", MITPConfig(num_labels=NUM_LABELS))
    return model.eval()


def in_alternation(first, second, steps: int, device: str) -> tuple[float, float, float]:
    """`paired` without a graph, after a warm-up call each: the medians of each call's time and of their ratio."""
    with torch.no_grad():
        timed(first, device), timed(second, device)
        return paired(first, second, steps, device)


def measure(size: str, batch: int, count: int, steps: int, device: str, dtype: str, onnx: bool = False) -> dict:
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
    scenarios = {
        "every adapter on every pair": (
            "fan-out",
            batch * count,
            lambda: model.fan_out(adapters=names, **pairs),
            lambda: one_call_per_adapter(pairs, everything),
        ),
        "one adapter per pair": (
            "mixed",
            batch,
            lambda: model(**pairs, adapter_names=own),
            lambda: one_call_per_adapter(pairs, groups),
        ),
    }
    rows = []
    for scenario, (way, answered, one_call, separate_calls) in scenarios.items():
        separate, together, speedup = in_alternation(separate_calls, one_call, steps, device)
        rows.append(
            {
                "scenario": scenario,
                "way": way,
                "answers": answered,
                "one_call_s": together,
                "separate_s": separate,
                "one_call_per_s": answered / together,
                "separate_per_s": answered / separate,
                "speedup": speedup,
            }
        )
    result = {"size": size, "batch": batch, "adapters": count, "device": device, "dtype": dtype, "rows": rows}
    if onnx:
        result["onnx"] = onnx_against_eager(model, pairs, steps, device)
    return result


def onnx_against_eager(model: torch.nn.Module, pairs: dict, steps: int, device: str) -> dict:
    """One adapter's inference on the pairs: the exported graph run by onnxruntime (CPU) against PyTorch eager."""
    import tempfile

    import onnxruntime

    from mitp_peft import export_onnx

    model.set_adapter("a0")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = export_onnx(model, folder, example_inputs=pairs)
        export_s = time.perf_counter() - started
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feed = {name: pairs[name].float().cpu().numpy() if pairs[name].is_floating_point() else
                pairs[name].cpu().numpy() for name in names}  # fmt: skip
        with torch.no_grad():
            eager = model(**pairs).logits.float().cpu()
        difference = float((torch.from_numpy(session.run(["logits"], feed)[0]) - eager).abs().max())
        eager_s, onnx_s, speedup = in_alternation(
            lambda: model(**pairs), lambda: session.run(["logits"], feed), steps, device
        )
    return {"export_s": export_s, "onnx_s": onnx_s, "eager_s": eager_s, "speedup": speedup,
            "max_difference": difference, "threads": torch.get_num_threads()}  # fmt: skip


def markdown(result: dict, machine: str) -> str:
    lines = [
        f"**CLIP {result['size']} size, {result['adapters']} adapters, {result['batch']} pairs, {result['dtype']}, "
        f"{result['device']} ({machine}), {date.today()}**",
        "",
        "| scenario | answers | one call | answers/s | one call per adapter | answers/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scenario']} ({r['way']}) | {r['answers']} | {r['one_call_s']:.2f} s | {r['one_call_per_s']:.1f} "
            f"| {r['separate_s']:.2f} s | {r['separate_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    if "onnx" in result:
        o = result["onnx"]
        lines += [
            "",
            f"One adapter, {result['batch']} pairs, float32 on the CPU: onnxruntime {o['onnx_s']:.2f} s, PyTorch "
            f"eager {o['eager_s']:.2f} s ({o['speedup']:.2f}x; logits differ by at most {o['max_difference']:.1e}; "
            f"the export took {o['export_s']:.0f} s).",
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
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX export run by onnxruntime (CPU)")
    args = parser.parse_args()
    if args.batch % args.adapters:
        parser.error("--batch must be a multiple of --adapters")
    if args.onnx and (args.device, args.dtype) != ("cpu", "float32"):
        parser.error("--onnx compares onnxruntime and PyTorch on the CPU in float32")
    result = measure(args.size, args.batch, args.adapters, args.steps, args.device, args.dtype, args.onnx)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(markdown(result, machine))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(result, machine=machine), indent=2))


if __name__ == "__main__":
    main()
