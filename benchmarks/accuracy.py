"""MITP against the cheap baselines and its peers on pretrained offline backbones: the accuracy study.

    python benchmarks/accuracy.py                      # the whole study (hours on 2 CPU cores; resumable)
    python benchmarks/accuracy.py --quick --backbones DIR   # minutes: every stage on a few samples (CI runs this)

Every row trains with one loop and one budget (`mitp_bench.experiment`): the same epochs for every method (the
cheap heads on frozen features also get 20, their converged best, and MITP is compared with the stronger of the
two), each row's learning rate picked on the validation split from one grid, then three seeds at that rate, test
reported as mean and standard deviation. Methods that train the backbone or prompts start from a head fitted on the
frozen features (LP-FT), all alike. MITP's variants are screened with one seed. Results go to a JSON-lines file as
they come (a rerun skips what is there) and the tables to docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
"""The one learning-rate grid. Cheap heads search all of it. The rows that run the backbone (LoRA, full fine-tuning,
MITP) search 1e-4 and 1e-3 to fit the study in hours on 2 CPU cores: on the first table (demo, either-or) they also
ran 1e-2, which lost for all three (validation: LoRA 0.29, full fine-tuning 0.14, MITP 0.81 against 0.83 to 0.85
at their best), and the results file keeps those runs."""
EXPENSIVE_GRID = (1e-4, 1e-3)
SEEDS = (0, 1, 2)
CONVERGED_EPOCHS = 20


HEAD_ROWS = ("linear", "mlp", "agreement", "zero_shot_init")


@dataclass(frozen=True)
class Budget:
    """The grids, seeds and converged epochs of a study."""

    grid: tuple[float, ...] = GRID
    expensive_grid: tuple[float, ...] = EXPENSIVE_GRID
    seeds: tuple[int, ...] = SEEDS
    converged_epochs: float = CONVERGED_EPOCHS
    heads: tuple[str, ...] = HEAD_ROWS


QUICK = Budget(grid=(1e-3, 1e-2), expensive_grid=(1e-3,), seeds=(0, 1), converged_epochs=2, heads=("linear", "mlp"))
"""--quick: every stage (grid, choice on validation, seeds, table, verdicts) on the least that exercises it."""
MITP_DEFAULT: dict[str, Any] = {"warm_start": True}
"""MITPConfig's defaults, trained as the package recommends (warm_start_head first): the row the study is about."""
VARIANTS: dict[str, dict[str, Any]] = {
    "cross hub": {"hub_attention": "cross"},
    "linear head (the paper's 2.0M budget on L/14)": {"head": "linear"},
    "agreement head": {"head": "agreement"},
    "per-modality heads": {"head": "per_modality"},
    "per-layer prompts": {"layer_prompts": True},
    "K=2": {"num_interaction_layers": 2},
    "M=16": {"prompt_length": 16},
    "temperature 1.0": {"temperature": 1.0},
    "no warm start": {"warm_start": False},
}
PLAN = (
    ("demo", "either_or"),
    ("demo", "matching"),
    ("large", "either_or"),
    ("demo", "multi_label"),
    ("demo", "matching_fashion"),
    ("large", "matching_fashion"),
)
"""(backbone, task) tables in the order they are measured: the paper's three kinds on images the backbones never
saw (animal silhouettes), and matching on images of the kind they were pre-trained on (Fashion-MNIST's test
images), where their zero-shot prediction is informative."""
SCREENED = (("demo", "either_or"),)
"""Where MITP's variants are screened: after the first three tables of the plan (VARIANTS_AFTER) and before the
others, so that a study cut short by time still has them."""
VARIANTS_AFTER = 3
"""How many tables of the plan are measured before the variants."""


@dataclass(frozen=True)
class Spec:
    """One run, hashable: what the results file is keyed by."""

    backbone: str
    task: str
    method: str
    options: str = "{}"
    learning_rate: float = 1e-3
    epochs: float = 1.0
    seed: int = 0
    max_train: Optional[int] = None

    @property
    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Study:
    backbones: dict[str, str]
    epochs: float
    results: Path
    workers: int
    max_train: Optional[int] = None
    done: dict[str, dict] = field(default_factory=dict)

    def load(self) -> None:
        if self.results.is_file():
            for line in self.results.read_text().splitlines():
                record = json.loads(line)
                self.done[record["key"]] = record

    def run(self, specs: list[Spec]) -> None:
        todo = [s for s in dict.fromkeys(specs) if s.key not in self.done]
        if not todo:
            return
        print(f"{len(todo)} runs to do ({len(specs) - len(todo)} done before)", flush=True)
        with ProcessPoolExecutor(max_workers=self.workers, initializer=_init_worker) as pool:
            for spec, result in zip(todo, pool.map(_execute, todo), strict=True):
                record = {"key": spec.key, **asdict(spec), **result}
                self.done[spec.key] = record
                with self.results.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"  {describe(spec)}: validation {result['validation']} test {result['test']}", flush=True)

    def get(self, spec: Spec) -> dict:
        return self.done[spec.key]


def describe(spec: Spec) -> str:
    return f"{Path(spec.backbone).name} {spec.task} {spec.method}{spec.options} lr={spec.learning_rate:g} " \
        f"epochs={spec.epochs:g} seed={spec.seed}"  # fmt: skip


# ---------------------------------------------------------------------------------------------------- workers

_CACHE: dict = {}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the study runs one process per core


def _execute(spec: Spec) -> dict:
    from transformers import AutoProcessor

    from mitp_bench.experiment import Run, execute, load_data

    data_key = (spec.backbone, spec.task, spec.max_train)
    if data_key not in _CACHE:
        _CACHE.clear()  # one task's tensors at a time
        data = load_data(spec.task, AutoProcessor.from_pretrained(spec.backbone))
        if spec.max_train is not None:
            data = data.shortened(spec.max_train)
        _CACHE[data_key] = data
    run = Run(
        spec.backbone, spec.task, spec.method, json.loads(spec.options), spec.learning_rate, spec.epochs, spec.seed
    )
    return execute(run, _CACHE[data_key], _CACHE.setdefault("features", {}))


# ---------------------------------------------------------------------------------------------------- the plan


@dataclass
class Row:
    """A row of the table: one method, its learning rate chosen on validation, three seeds."""

    name: str
    method: str
    options: dict
    grid: tuple[float, ...]
    epochs: float
    seeds: tuple[int, ...] = SEEDS


def baseline_rows(task_kind: str, epochs: float, budget: Budget = Budget()) -> list[Row]:
    rows = [Row("zero-shot (the backbone's own prediction)", "zero_shot", {}, (1e-3,), epochs, (0,))]
    for head in budget.heads:
        if head == "zero_shot_init" and task_kind == "matching":
            continue  # its labels are not classes the backbone can name
        for head_epochs in (epochs, budget.converged_epochs):
            name = (
                f"late fusion, {head.replace('_', '-')} head, {head_epochs:g} epoch{'s' if head_epochs != 1 else ''}"
            )
            rows.append(Row(name, "head", {"head": head}, budget.grid, head_epochs, budget.seeds))
    trained = (
        ("LoRA r=8 (attention of both towers) + linear head", "lora", {"warm_start": True}),
        ("full fine-tuning + linear head", "full_finetune", {"warm_start": True}),
        ("MITP (defaults)", "mitp", dict(MITP_DEFAULT)),
    )
    rows += [
        Row(name, method, options, budget.expensive_grid, epochs, budget.seeds) for name, method, options in trained
    ]
    return rows


def specs_for(study: Study, backbone: str, task: str, row: Row, seeds: tuple[int, ...], rates) -> list[Spec]:
    return [
        Spec(
            backbone, task, row.method, json.dumps(row.options, sort_keys=True), lr, row.epochs, seed, study.max_train
        )
        for lr in rates
        for seed in seeds
    ]


def chosen_rate(study: Study, backbone: str, task: str, row: Row) -> float:
    from mitp_bench.experiment import score

    screened = specs_for(study, backbone, task, row, (row.seeds[0],), row.grid)
    return max(screened, key=lambda s: score(study.get(s)["validation"])).learning_rate


def summarize(study: Study, backbone: str, task: str, row: Row) -> dict:
    from mitp_bench.experiment import score

    rate = chosen_rate(study, backbone, task, row)
    records = [study.get(s) for s in specs_for(study, backbone, task, row, row.seeds, (rate,))]
    tests = [score(r["test"]) for r in records]
    return {
        "name": row.name,
        "learning_rate": rate,
        "trainable": records[0]["trainable"],
        "validation": score(records[0]["validation"]),
        "test_mean": statistics.mean(tests),
        "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "test": [r["test"] for r in records],
        "seconds": statistics.mean(r["seconds"] for r in records),
    }


def has_default(summaries: list[dict]) -> bool:
    """Whether a table's MITP default row is measured (tables without it are not reported)."""
    return any(s["name"] == "MITP (defaults)" for s in summaries)


def summarize_done(study: Study, backbone: str, task: str, rows: list[Row]) -> list[dict]:
    """The rows whose every run is in the results file, in order, stopping at the first incomplete one."""
    summaries = []
    for row in rows:
        try:
            summaries.append(summarize(study, study.backbones[backbone], task, row))
        except KeyError:
            break
    return summaries


def run_table(study: Study, backbone: str, task: str, rows: list[Row]) -> list[dict]:
    """Every row's grid with the first seed, then the other seeds at each row's chosen rate."""
    path = study.backbones[backbone]
    study.run([s for row in rows for s in specs_for(study, path, task, row, (row.seeds[0],), row.grid)])
    study.run(
        [
            s
            for row in rows
            for s in specs_for(study, path, task, row, row.seeds[1:], (chosen_rate(study, path, task, row),))
        ]
    )
    return [summarize(study, path, task, row) for row in rows]


def variant_rows(epochs: float, task_kind: str, rate: float) -> list[Row]:
    """MITP's variants, one seed each, at the learning rate the default row chose on this task."""
    variants = dict(VARIANTS)
    if task_kind != "matching":
        variants["zero-shot head start"] = {"zero_shot_init": True}
    return [
        Row(f"MITP, {name}", "mitp", {**MITP_DEFAULT, **options}, (rate,), epochs, (0,))
        for name, options in variants.items()
    ]


# ---------------------------------------------------------------------------------------------------- report


def markdown(backbone: str, task: str, summaries: list[dict], multi_label: bool) -> str:
    metric = "mean of F1-macro and F1-micro" if multi_label else "accuracy"
    lines = [
        f"**{backbone} backbone, {task}** ({metric}; test: mean ± std over the seeds)",
        "",
        "| method | trainable | lr (chosen on validation) | validation | test | seeds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        rate = "-" if s["trainable"] == 0 else f"{s['learning_rate']:g}"
        test = f"{s['test_mean']:.3f} ± {s['test_std']:.3f}" if len(s["test"]) > 1 else f"{s['test_mean']:.3f}"
        lines.append(
            f"| {s['name']} | {s['trainable']:,} | {rate} | {s['validation']:.3f} | {test} | {len(s['test'])} |"
        )
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    ("zero-shot", "zero-shot"),
    ("late fusion, linear", "late fusion, linear head"),
    ("late fusion, MLP", "late fusion, mlp head"),
    ("late fusion, agreement", "late fusion, agreement head"),
    ("LoRA", "LoRA"),
    ("full fine-tuning", "full fine-tuning"),
    ("MITP", "MITP (defaults)"),
)
"""The summary's columns and the row names they take; late fusion takes the better of 1 and 20 epochs on test,
which favours the baseline."""


def summary(tables: dict) -> str:
    """One line per table: test mean ± std of each kind of row, best marked."""
    lines = [
        "| backbone, task | " + " | ".join(name for name, _ in SUMMARY_COLUMNS) + " |",
        "|---|" + "---:|" * len(SUMMARY_COLUMNS),
    ]
    for (backbone, task), summaries in tables.items():
        if not has_default(summaries):
            continue
        cells = []
        for _, prefix in SUMMARY_COLUMNS:
            matching = [s for s in summaries if s["name"].startswith(prefix)]
            cells.append(max(matching, key=lambda s: s["test_mean"]) if matching else None)
        best = max(c["test_mean"] for c in cells if c is not None)
        texts = [
            "-" if c is None else (f"{c['test_mean']:.3f}" + (f" ± {c['test_std']:.3f}" if len(c["test"]) > 1 else ""))
            for c in cells
        ]
        texts = [
            f"**{t}**" if c is not None and c["test_mean"] == best else t for t, c in zip(texts, cells, strict=True)
        ]
        lines.append(f"| {backbone}, {task} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def verdicts(task: str, summaries: list[dict]) -> list[str]:
    """The efficacy issue's targets, as measured on this table."""
    from mitp_bench.tasks import task_parts

    by = {s["name"]: s for s in summaries}
    mitp = by["MITP (defaults)"]
    kind, source = task_parts(task)
    late = {n: s for n, s in by.items() if n.startswith("late fusion")}
    best_late = max(late.values(), key=lambda s: s["test_mean"])
    lines = [
        f"MITP {mitp['test_mean']:.3f} vs best late fusion ({best_late['name']}) {best_late['test_mean']:.3f}: "
        f"{'above' if mitp['test_mean'] > best_late['test_mean'] else 'NOT above'}",
    ]
    linear = max((s for n, s in late.items() if "linear head" in n), key=lambda s: s["test_mean"])
    lines.append(f"not below late fusion with a linear head ({linear['test_mean']:.3f}): "
                 f"{'yes' if mitp['test_mean'] >= linear['test_mean'] else 'NO'}")  # fmt: skip
    for peer in ("LoRA r=8 (attention of both towers) + linear head", "full fine-tuning + linear head"):
        lines.append(f"vs {peer.split(' (')[0].split(' +')[0]} {by[peer]['test_mean']:.3f}: "
                     f"{mitp['test_mean'] - by[peer]['test_mean']:+.3f}")  # fmt: skip
    zero_shot = by.get("zero-shot (the backbone's own prediction)")
    if zero_shot is not None and source == "fashion":
        lines.append(f"above the backbone's zero-shot ({zero_shot['test_mean']:.3f}): "
                     f"{'yes' if mitp['test_mean'] > zero_shot['test_mean'] else 'NO'}")  # fmt: skip
    if kind == "matching":
        lines.append(f"matching 0.75 or more: {'yes' if mitp['test_mean'] >= 0.75 else 'NO'}")
    return lines


def run_variants(study: Study, tables: dict, args: argparse.Namespace) -> None:
    """MITP's variants, one seed each, at the rate the default row chose, appended to their table."""
    from mitp_bench.tasks import task_parts

    if args.quick or args.no_variants:
        return
    for backbone, task in SCREENED:
        summaries = tables.get((backbone, task), [])
        if not summaries or summaries[-1]["name"] != "MITP (defaults)":
            continue  # the default row is not measured yet
        variants = variant_rows(args.epochs, task_parts(task)[0], summaries[-1]["learning_rate"])
        summaries += summarize_done(study, backbone, task, variants) if args.report_only else run_table(
            study, backbone, task, variants)  # fmt: skip


def machine() -> str:
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {date.today()}"


def main() -> None:
    from mitp_bench.tasks import task_parts

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", help="name=folder pairs, comma-separated (default: the two demo builds)")
    parser.add_argument("--tasks", help="comma-separated (default: the study's plan, PLAN)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_accuracy.jsonl")
    parser.add_argument("--report", type=Path, help="write the tables (Markdown) here")
    parser.add_argument("--quick", action="store_true", help="a few training samples, one task, no variants")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="tables of what the results file holds; run nothing"
    )
    args = parser.parse_args()

    from mitp_bench.backbone import PRESETS, build_backbone, preset_dir

    if args.backbones:
        backbones = dict(pair.split("=", 1) for pair in args.backbones.split(","))
    else:
        backbones = {name: str(preset_dir(name)) for name in PRESETS}
    study = Study(backbones, args.epochs, args.results, args.workers, max_train=64 if args.quick else None)
    study.load()
    budget = QUICK if args.quick else Budget()
    sections = [f"Machine: {machine()}. Epochs: {args.epochs:g}; converged heads: {budget.converged_epochs:g}."]
    plan = (
        [(b, t) for b, t in PLAN if b in backbones]
        if not args.backbones
        else [(b, t) for b in backbones for t in ("either_or",)]
    )
    if args.tasks:
        plan = [(b, t) for b in backbones for t in args.tasks.split(",")]
    if args.quick:
        plan = plan[:1]
    built = set()
    tables = {}
    variants_after = min(VARIANTS_AFTER, len(plan)) - 1
    for index, (backbone, task) in enumerate(plan):
        if not args.backbones and not args.report_only and backbone not in built:
            build_backbone(preset_dir(backbone), PRESETS[backbone])  # once; reused while its recipe is unchanged
            built.add(backbone)
        rows = baseline_rows(task_parts(task)[0], args.epochs, budget)
        tables[backbone, task] = summarize_done(study, backbone, task, rows) if args.report_only else run_table(
            study, backbone, task, rows)  # fmt: skip
        if index == variants_after:
            run_variants(study, tables, args)
    sections.append(summary(tables))
    print(f"\n{sections[-1]}\n", flush=True)
    for (backbone, task), summaries in tables.items():
        if not has_default(summaries):
            continue
        table = markdown(backbone, task, summaries, task_parts(task)[0] == "multi_label")
        checks = "\n".join(f"- {line}" for line in verdicts(task, summaries))
        sections.append(f"{table}\n\n{checks}")
        print(f"\n{table}\n\n{checks}\n", flush=True)
    if args.report:
        args.report.write_text("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    sys.exit(main())
