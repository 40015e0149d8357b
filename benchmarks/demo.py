"""The main job, offline: MITP with its defaults against late fusion and LoRA on easy-VQA, a public visual-question
dataset, with a real pretrained dual encoder (DINOv2-S/14 and all-MiniLM-L6-v2); then the adapter is saved, reloaded
and asked a few questions.

    python benchmarks/demo.py                          # builds the backbone once (about 3 minutes), then the rows
    python benchmarks/demo.py --base_model DIR         # another dual encoder folder (with its processor)

Every row trains with the loop of the accuracy study (benchmarks/accuracy.py, docs/results.md) at the rate the study
chose for it on easy-VQA's validation split, in a process of its own so that its peak memory is its own. The demo
trains on a part of the study's training questions and tests on a part of the published test split, to fit about
ten minutes on two cores; docs/results.md gives what that costs against the study's numbers.
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

import torch
from transformers import AutoProcessor

import mitp_peft
from mitp_bench.dino import DEFAULT_DIR, build_dino_backbone
from mitp_bench.experiment import Run, execute, load_data, score
from mitp_bench.measure import peak_memory_bytes

TASK = "easy_vqa"
SIZES = {"train": 3000, "validation": 500, "test": 2000}
"""Questions per split: the first of the study's splits (its training questions are drawn at random, and its test
split is easy-VQA's published one, in the package's order)."""
EPOCHS = 3
ROWS = (
    ("late fusion, MLP head (20 epochs)", "head", {"head": "mlp"}, 1e-3, 20.0),
    ("LoRA r=8 + MLP head", "lora", {"warm_start": True}, 1e-3, EPOCHS),
    ("MITP (defaults)", "mitp", {"warm_start": True}, 1e-3, EPOCHS),
)
MITP_ROW = "MITP (defaults)"
NO_ZERO_SHOT = (
    "No zero-shot row: the backbone's shared space was fitted on captions of ten garments, so it cannot name the "
    "colours and shapes easy-VQA asks about."
)


def worker(row: dict, output_dir: str) -> dict:
    """One row, in this process: train, evaluate, and for MITP save the adapter (with its card) and five logits."""
    run = Run(**row["run"])
    data = load_data(run.task, AutoProcessor.from_pretrained(run.backbone), limit=row["sizes"])
    result = execute(run, data, keep_model=row["name"] == MITP_ROW)
    result["peak_memory_bytes"] = peak_memory_bytes()
    result["sizes"] = {name: len(part) for name, part in data.splits.items()}
    model = result.pop("model", None)
    if model is not None:
        training = {"epochs": run.epochs, "learning_rate": run.learning_rate, "warm_start_head": True}
        mitp_peft.describe_training(model, dataset=f"easy-VQA (mitp-peft demo, {len(data.splits['train'])} "
                                    "training questions)", training=training)  # fmt: skip
        model.save_pretrained(Path(output_dir) / "adapter")
        with torch.no_grad():
            result["sample_logits"] = model(**data.splits["test"].batch(torch.arange(5))).logits.tolist()
        result["adapter"] = str(Path(output_dir) / "adapter")
    return result


def run_row(name: str, run: Run, output_dir: str, sizes: dict[str, int]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "result.json"
        spec = json.dumps({"name": name, "run": asdict(run), "sizes": sizes})
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


def table(results: list[dict]) -> str:
    lines = [
        "| method | test accuracy | validation | trainable params | training time | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {score(r['test']):.3f} | {score(r['validation']):.3f} | {r['trainable']:,} | "
            f"{r['seconds']:.0f} s | {r['peak_memory_bytes'] / 2**30:.2f} GB |"
        )
    return "\n".join(lines)


def reload_and_predict(result: dict, backbone: str) -> None:
    """Reload the saved adapter, check it reproduces the trained model's logits, and answer five test questions."""
    from mitp_bench.easy_vqa import build

    model = mitp_peft.from_pretrained(result["adapter"], base_model_name_or_path=backbone)
    processor = AutoProcessor.from_pretrained(backbone)
    data = load_data(TASK, processor, limit={"train": 1, "validation": 1, "test": 5})
    test = data.splits["test"]
    with torch.no_grad():
        logits = model(**test.batch(torch.arange(5))).logits
    same = torch.allclose(logits, torch.tensor(result["sample_logits"]), atol=1e-5)
    print(f"\nReloaded the adapter from {result['adapter']}: logits {'match' if same else 'DIFFER FROM'} the "
          "trained model's.")  # fmt: skip
    rows = build(limit={"train": 1, "validation": 1, "test": 5})["test"]
    predictions = mitp_peft.predict(model, list(rows["image"]), list(rows["text"]), processor, top_k=2)
    for row, prediction in zip(rows, predictions, strict=True):
        guesses = ", ".join(
            f"{label} {score:.2f}" for label, score in zip(prediction["labels"], prediction["scores"], strict=True)
        )
        truth = data.names[row["label"]]
        print(f"  {row['text']!r:48} true: {truth:10} predicted: {guesses}")
    if not same:
        raise SystemExit("The reloaded adapter does not reproduce the trained model's outputs.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_model", default=str(DEFAULT_DIR), help="a dual encoder folder (default: the study's)")
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--sizes", type=json.loads, default=SIZES, help="questions per split, as JSON")
    parser.add_argument("--epochs", type=float, default=EPOCHS, help="epochs of LoRA and MITP")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(json.loads(args.worker), args.output_dir)))
        return

    started = time.perf_counter()
    if args.base_model == str(DEFAULT_DIR):
        report = build_dino_backbone(DEFAULT_DIR)
        print(f"Backbone: DINOv2-S/14 + all-MiniLM-L6-v2, built in {time.perf_counter() - started:.0f} s "
              f"(zero-shot {report['zero_shot_fashion_mnist_test']:.3f} on Fashion-MNIST test).")  # fmt: skip
    print(NO_ZERO_SHOT)
    results = []
    for name, method, options, rate, epochs in ROWS:
        run = Run(args.base_model, TASK, method, options, rate, epochs if method == "head" else args.epochs)
        results.append(run_row(name, run, args.output_dir, args.sizes))
    sizes = results[-1]["sizes"]
    print(
        f"\neasy-VQA: {sizes['train']} training questions, {sizes['test']} test questions (majority answer 'yes': "
        f"0.373 on the whole test split); {date.today()}, {torch.get_num_threads()} threads, "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(table(results))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "demo.json").write_text(json.dumps(results, indent=2))
    reload_and_predict(results[-1], args.base_model)


if __name__ == "__main__":
    main()
