"""The main job, offline: MITP with its defaults against zero-shot, late fusion and full fine-tuning of the same
pretrained dual encoder, on a task of the paper's kind; then the adapter is saved, reloaded and used to predict.

    python examples/offline_demo/run.py                  # the demo backbone (built once), the either-or task
    python examples/offline_demo/run.py --task matching  # or multi_label, either_or_fashion, matching_fashion

Every row trains with the loop and learning rates of the accuracy study (benchmarks/accuracy.py, docs/results.md),
one epoch, in a process of its own so that its peak memory is its own.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Optional

import torch
from transformers import AutoProcessor

import mitp_peft
from mitp_bench.backbone import DEFAULT_DIR, build_backbone
from mitp_bench.experiment import Run, execute, load_data, score
from mitp_bench.measure import peak_memory_bytes
from mitp_bench.tasks import TASKS, build_task, task_parts

# Learning rates the accuracy study chose on the either-or task's validation split (docs/results.md).
ROWS = (
    ("zero-shot (image vs label names)", "zero_shot", {}, 0.0, 1.0),
    ("late fusion, linear head (20 epochs)", "head", {"head": "linear"}, 3e-3, 20.0),
    ("late fusion, MLP head (20 epochs)", "head", {"head": "mlp"}, 1e-3, 20.0),
    ("full fine-tuning + MLP head", "full_finetune", {"warm_start": True}, 1e-3, 1.0),
    ("MITP (defaults)", "mitp", {"warm_start": True}, 1e-4, 1.0),
)
MITP_ROW = "MITP (defaults)"


def worker(row: dict, output_dir: str) -> dict:
    """One row, in this process: train, evaluate, and for MITP save the adapter (with its card) and five logits."""
    run = Run(**row["run"])
    data = load_data(run.task, AutoProcessor.from_pretrained(run.backbone))
    if row["max_train"]:
        data = data.shortened(row["max_train"])
    result = execute(run, data, keep_model=row["name"] == MITP_ROW)
    result["peak_memory_bytes"] = peak_memory_bytes()
    result["train_size"] = len(data.splits["train"])
    result["test_size"] = len(data.splits["test"])
    model = result.pop("model", None)
    if model is not None:
        training = {"epochs": run.epochs, "learning_rate": run.learning_rate, "warm_start_head": True}
        mitp_peft.describe_training(model, dataset=f"mitp-peft demo: {run.task}", training=training)
        model.save_pretrained(Path(output_dir) / "adapter")
        with torch.no_grad():
            result["sample_logits"] = model(**data.splits["test"].batch(torch.arange(5))).logits.tolist()
        result["adapter"] = str(Path(output_dir) / "adapter")
    return result


def run_row(name: str, run: Run, output_dir: str, max_train: Optional[int]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "result.json"
        spec = json.dumps({"name": name, "run": asdict(run), "max_train": max_train})
        command = [
            sys.executable,
            __file__,
            "--worker",
            spec,
            "--result",
            str(result_file),
            "--output_dir",
            output_dir,
        ]
        print(f"== {name} ==", flush=True)
        subprocess.run(command, check=True)
        return {"name": name, "method": run.method, **json.loads(result_file.read_text())}


def table(results: list[dict], multi_label: bool) -> str:
    metric = "F1 (macro+micro)/2" if multi_label else "accuracy"
    lines = [
        f"| method | test {metric} | validation | trainable params | training time | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        seconds = f"{r['seconds']:.0f} s" if r["method"] != "zero_shot" else "none"
        lines.append(
            f"| {r['name']} | {score(r['test']):.3f} | {score(r['validation']):.3f} | {r['trainable']:,} | {seconds} "
            f"| {r['peak_memory_bytes'] / 2**30:.2f} GB |"
        )
    return "\n".join(lines)


def reload_and_predict(result: dict, task: str, backbone: str) -> None:
    """Reload the saved adapter, check it reproduces the trained model's logits, and predict five test pairs."""
    model = mitp_peft.from_pretrained(result["adapter"])
    data = load_data(task, AutoProcessor.from_pretrained(backbone)).shortened(5)
    test = data.splits["test"]
    first = torch.arange(5)
    with torch.no_grad():
        logits = model(**test.batch(first)).logits
    same = torch.allclose(logits, torch.tensor(result["sample_logits"]), atol=1e-5)
    verdict = "match" if same else "DIFFER FROM"
    print(f"\nReloaded the adapter from {result['adapter']}: logits {verdict} the trained model's.")
    rows = build_task(task)["test"].select(range(5))
    predictions = mitp_peft.predict(
        model, list(rows["image"]), list(rows["text"]), AutoProcessor.from_pretrained(backbone), top_k=2
    )
    for row, prediction, target in zip(rows, predictions, test.labels[first], strict=True):
        guesses = ", ".join(
            f"{label} {score:.2f}" for label, score in zip(prediction["labels"], prediction["scores"], strict=True)
        )
        truth = data.names[int(target)] if target.dim() == 0 else [data.names[i] for i in target.nonzero().flatten()]
        print(f"  {row['text']!r:42} true: {truth!s:12} predicted: {guesses}")
    if not same:
        raise SystemExit("The reloaded adapter does not reproduce the trained model's outputs.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="either_or")
    parser.add_argument("--base_model", default=str(DEFAULT_DIR), help="a dual encoder folder (default: the demo's)")
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--max_train", type=int, help="shortened runs: the first N pairs of each split")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(json.loads(args.worker), args.output_dir)))
        return

    if args.base_model == str(DEFAULT_DIR):
        report = build_backbone(DEFAULT_DIR)
        print(f"Demo backbone: zero-shot accuracy {report['zero_shot_fashion_mnist_test']:.3f} on Fashion-MNIST test.")
    started = time.perf_counter()
    results = []
    for name, method, options, rate, epochs in ROWS:
        if method == "zero_shot" and task_parts(args.task)[0] == "matching":
            options = {}
        run = Run(args.base_model, args.task, method, options, rate, epochs)
        results.append(run_row(name, run, args.output_dir, args.max_train))
    multi_label = task_parts(args.task)[0] == "multi_label"
    print(
        f"\n{results[-1]['train_size']} training pairs, {results[-1]['test_size']} test pairs, task {args.task}; "
        f"{date.today()}, {torch.get_num_threads()} threads, {time.perf_counter() - started:.0f} s\n"
    )
    print(table(results, multi_label))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "demo.json").write_text(json.dumps(results, indent=2))
    reload_and_predict(results[-1], args.task, args.base_model)


if __name__ == "__main__":
    main()
