"""The GPU check: one command on a machine with one NVIDIA GPU (about 11 minutes on an H200, estimated from its first
run; `--parts` splits it into shorter calls), one JSON and one Markdown table of what only a GPU can show.

    bash benchmarks/gpu_check.sh              # on the GPU machine, from the repository root (writes .cache/gpu_check/)
    python benchmarks/gpu_check.py --smoke    # the same steps on tiny sizes on the CPU, in seconds (CI runs this)

Steps, each recorded with its time and outcome (a failing step is recorded and the others still run):
1. the device tests of the suite on the GPU (MITP_TEST_DEVICE=cuda): bf16 backbones, autocast, compile, a training
   step under `torch.cuda.set_sync_debug_mode("error")` (no host syncs);
2. CLIP ViT-B/16 and ViT-L/14 sizes (random weights), batch 32, bf16: train step time, peak memory and training
   throughput of MITP against the frozen no-grad forward, LoRA r=8 and full fine-tuning, and what torch.compile gives
   MITP (`benchmarks/efficiency.py`);
3. four adapters in one call (fan-out, and a per-sample mixed batch) against one call per adapter
   (`benchmarks/serving.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import efficiency
import serving as serving_benchmark
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEVICE_TESTS = ["tests/test_robustness.py", "tests/test_compile.py"]
DEVICE_TEST_FILTER = "bf16 or autocast or dtype or compile or reads_nothing_back"
EFFICIENCY_METHODS = "frozen,mitp,mitp_compiled,lora,full_ft"
# Compiling takes most of a CPU run's time; the suite's own compile tests cover it.
SMOKE_METHODS = "frozen,mitp,lora,full_ft"
FULL = dict(sizes=("b16", "l14"), batch=32, steps=3, dtype="bfloat16", serving_size="b16", tests=DEVICE_TEST_FILTER,
            methods=EFFICIENCY_METHODS)  # fmt: skip
# The smoke run checks the script's path on tiny sizes: one device test (the suite runs them all anyway).
# bf16 as on the GPU: the baselines' float32 heads on a bf16 backbone failed there first.
SMOKE = dict(sizes=("tiny",), batch=4, steps=1, dtype="bfloat16", serving_size="tiny", tests="bf16_backbone",
             methods=SMOKE_METHODS)  # fmt: skip


def run(name: str, command: list[str], env: dict | None = None, timeout: int = 600) -> dict:
    """One step: its command, outcome, time and the end of its output."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {}))
        )
        ok, output = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired as error:
        ok, output = False, f"timed out after {timeout} s\n{error.stdout or ''}"
    print(f"{'ok  ' if ok else 'FAIL'} {name} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"step": name, "ok": ok, "seconds": round(time.perf_counter() - started, 1), "output": output[-6000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script itself")
    parser.add_argument("--output", type=Path, default=ROOT / ".cache" / "gpu_check")
    parser.add_argument(
        "--parts",
        help="comma-separated steps to run of: tests, each efficiency size (b16, l14; tiny with --smoke), serving "
        "(default: all). A whole run takes about 11 minutes on an H200; a lease whose calls are shorter runs it in "
        "two, e.g. 'tests,b16,serving' then 'l14', each with its own --output.",
    )
    args = parser.parse_args()
    plan = SMOKE if args.smoke else FULL
    every_part = ["tests", *plan["sizes"], "serving"]
    parts = args.parts.split(",") if args.parts else every_part
    if set(parts) - set(every_part):
        parser.error(f"unknown parts {sorted(set(parts) - set(every_part))}; choose from {', '.join(every_part)}")
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here: run the GPU check on a machine with an NVIDIA GPU, or --smoke.")
    args.output.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    steps = []
    if "tests" in parts:
        command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DEVICE_TESTS, "-k", plan["tests"]]
        steps.append(run("device tests", command, env={"MITP_TEST_DEVICE": device, "HF_HUB_OFFLINE": "1"}))
    tables = {}
    for size in (size for size in plan["sizes"] if size in parts):
        rows = args.output / f"efficiency_{size}.json"
        command = [python, str(HERE / "efficiency.py"), "--size", size, "--batch", str(plan["batch"])]
        command += ["--steps", str(plan["steps"]), "--device", device, "--dtype", plan["dtype"]]
        command += ["--methods", plan["methods"], "--json", str(rows)]
        steps.append(run(f"efficiency {size}", command))
        if rows.is_file():
            measured = json.loads(rows.read_text())
            tables[f"efficiency {size}"] = "\n".join(
                [efficiency.markdown(measured["rows"], measured["title"]), ""]
                + [f"- {line}" for line in efficiency.targets(measured["rows"])]
                + [f"- {method}: FAILED (its error is in gpu_check.json)" for method in measured["failed"]]
            )
    serving = args.output / "serving.json"
    if "serving" in parts:
        command = [python, str(HERE / "serving.py"), "--size", plan["serving_size"], "--batch", str(plan["batch"])]
        command += ["--steps", str(plan["steps"]), "--device", device, "--dtype", plan["dtype"]]
        command += ["--json", str(serving)]
        steps.append(run("serving", command))
        if serving.is_file():
            measured = json.loads(serving.read_text())
            tables["serving"] = serving_benchmark.markdown(measured, measured["machine"])

    machine = torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()} CPU"
    report = {
        "date": str(date.today()),
        "device": machine,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "smoke": args.smoke,
        "steps": steps,
    }
    (args.output / "gpu_check.json").write_text(json.dumps(report, indent=2))
    lines = [f"# GPU check, {machine}, torch {torch.__version__}, {date.today()}", "", "| step | outcome | time |"]
    lines += ["|---|---|---:|"] + [
        f"| {s['step']} | {'ok' if s['ok'] else 'FAILED'} | {s['seconds']} s |" for s in steps
    ]
    for name, table in tables.items():
        lines += ["", f"## {name}", "", table.strip()]
    (args.output / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print(f"Wrote {args.output / 'gpu_check.json'} and {args.output / 'gpu_check.md'}")
    if not all(s["ok"] for s in steps):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
