"""MITP against the cheap baselines and its peers on a real pretrained dual encoder: the accuracy study.

    python benchmarks/accuracy.py                      # the whole study (hours on 2 CPU cores; resumable)
    python benchmarks/accuracy.py --quick --backbones demo=DIR   # minutes: every stage on a few samples (CI runs it)

Backbone: DINOv2-S/14 and all-MiniLM-L6-v2, both frozen and pretrained, joined by projections fitted on captions
of Fashion-MNIST's training images (`mitp_bench.dino`; `make backbone-dino`). Tasks (`mitp_bench.tasks`): the two
grid tasks, where the text must tell the vision tower what to look at, then the paper's three kinds on images the
backbone never saw.

Every row trains with one loop (`mitp_bench.experiment`). Each row has settings (learning rate, epochs) screened
with seed 0 and picked on the validation split, then three seeds at the picked setting; test is reported as mean and
standard deviation. Late-fusion heads on frozen features train 20 epochs (converged) at every rate of the grid; the
rows that run the backbone screen two rates at `screen_epochs`, then more epochs at the better rate: MITP 3 then 1
and 10, LoRA 1 then 3 (and at the epochs MITP's defaults picked, which the grid targets compare against), full
fine-tuning 1 (3 too on the single-item tasks, where it is affordable). Methods that train the backbone or prompts
start from a head fitted on the frozen features (LP-FT), all alike, and every head is MITP's (an MLP on both pooled
features and their agreement, unless a row names another). MITP's variants are screened with one seed at the setting
the head on pooled features picked, on the first three tables; the package's defaults and their form with the hub
reading prompts only (`defaults_rows`) pick their own rate at that row's epochs and run every seed on every table.
Results go to a JSON-lines file as they come (a rerun skips what is there) and the tables to
docs/results_accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from mitp_bench.experiment import Run

ROOT = Path(__file__).resolve().parents[1]
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
EXPENSIVE_GRID = (1e-4, 1e-3)
"""The rates the rows that run the backbone screen (1e-2 lost for LoRA, full fine-tuning and MITP on the first
study's first table)."""
FULL_FINETUNE_GRID = (1e-5, *EXPENSIVE_GRID)
"""Full fine-tuning of a pretrained ViT also gets the rate it is usually trained at (1e-4 and 1e-3 left DINOv2 at
chance on the first grid table)."""
SEEDS = (0, 1, 2)
CONVERGED_EPOCHS = 20
HEAD_ROWS = ("linear", "agreement", "mlp", "zero_shot_init")

WIDE = {"translator_hidden_size": 512, "head_hidden_size": 512}
"""Translators and head 512 wide: 3,207,013 parameters on CLIP ViT-L/14 with 101 classes (2.9% of the DINOv2
backbone), the reference of the budget's rule."""
READING_PROMPTS: dict[str, Any] = {"head_uses_memory": True, "head_hidden_size": 128}
"""The package's defaults with the hub reading prompts only, written out over the keying baseline
(`recorded_defaults`): the head reads the hub memory and is a third of the text tower's width (384 for MiniLM), as is
the translator. The paper's budget: 2,066,277 parameters on CLIP ViT-L/14 with 101 classes (benchmarks/budget.py);
0.96% of the DINOv2 backbone on the study's tasks (0.99% with 101 classes)."""
DEFAULTS: dict[str, Any] = {**READING_PROMPTS, "hub_reads": "tokens"}
"""The package's defaults: the hub reads the other tower's tokens too (no parameter more)."""


def recorded_defaults(method: str, text_width: int) -> dict[str, Any]:
    """What a stored run's options are keyed over, a fixed baseline: the MLP head half the text tower's width,
    reading pooled features only, the hub reading prompts only (the row *head on pooled features*), and for the other
    heads that same width. Pinned so that a change of the package's defaults leaves what a stored key means as it
    was; the row of the package's defaults names them in its options (`DEFAULTS`)."""
    if method == "zero_shot":
        return {}
    head = {"head_hidden_size": text_width // 2}
    return {"head_uses_memory": False, "hub_reads": "prompts", **head} if method == "mitp" else head


VARIANTS: dict[str, dict[str, Any]] = {
    "hub reads tokens": {"hub_reads": "tokens"},
    "head reads the hub memory": {"head_uses_memory": True},
    "K=6 (every text layer, the top half of the vision tower)": {"num_interaction_layers": 6},
    "widths 256 / 384 (L/14's defaults, 1.8% here)": {"translator_hidden_size": 256, "head_hidden_size": 384},
    "M=16 prompts": {"prompt_length": 16},
    "a prompt of its own per layer": {"layer_prompts": True},
}
"""Screened against the head on pooled features, with its options otherwise."""
VARIANT_NAMES = tuple(f"MITP, {name}" for name in VARIANTS)
"""The variants' rows as the tables name them (and as --confirm matches them)."""


@dataclass(frozen=True)
class Budget:
    """The grids, seeds and epochs of a study."""

    grid: tuple[float, ...] = GRID
    expensive_grid: tuple[float, ...] = EXPENSIVE_GRID
    full_finetune_grid: tuple[float, ...] = FULL_FINETUNE_GRID
    seeds: tuple[int, ...] = SEEDS
    converged_epochs: float = CONVERGED_EPOCHS
    heads: tuple[str, ...] = HEAD_ROWS
    mitp_epochs: tuple[float, ...] = (3.0, 1.0, 10.0)
    lora_epochs: tuple[float, ...] = (1.0, 3.0)
    full_finetune_epochs: tuple[float, ...] = (1.0, 3.0)
    grid_full_finetune_epochs: tuple[float, ...] = (1.0,)
    variants: bool = True


QUICK = Budget(
    grid=(1e-3, 1e-2), expensive_grid=(1e-3,), full_finetune_grid=(1e-3,), seeds=(0, 1), converged_epochs=2,
    heads=("linear", "mlp"),
    mitp_epochs=(1.0,), lora_epochs=(1.0,), full_finetune_epochs=(1.0,), grid_full_finetune_epochs=(1.0,),
    variants=False,
)  # fmt: skip
"""--quick: every stage (grid, choice on validation, seeds, table, verdicts) on the least that exercises it."""
PUBLIC_KINDS = ("easy_vqa",)
"""Tables on public data, measured with the package's defaults alone: their MITP row screens its own rate and epochs
(no rows of other forms of MITP), and the backbone, whose shared space was fitted on ten garment captions, cannot
answer their questions zero-shot (no zero-shot row)."""
PLAN = (
    ("dino", "easy_vqa"),
    ("dino", "grid_locating"),
    ("dino", "grid_matching"),
    ("dino", "either_or"),
    ("dino", "matching"),
    ("dino", "multi_label"),
)
"""(backbone, task) tables in the order they are measured: easy-VQA (public data) and the grids first, where the text
must tell the vision tower what to look at (what interaction is for), then the paper's three kinds on animal
silhouettes."""
SCREENED = ("grid_locating", "grid_matching", "either_or")
"""Where MITP's variants are screened, right after each of these tables."""
MITP_WIDE = "MITP, widths 512 (3.2M on L/14)"
"""The reference of the budget's rule: a default within the budget may lose no more than half a point on any task
against these widths."""
MITP_POOLED = "MITP, head on pooled features (1.95M on L/14)"
"""The keying baseline's row (`recorded_defaults`): its MITP variants are screened at the setting it picked."""
MITP_READS_PROMPTS = "MITP, hub reads prompts only (2.07M on L/14)"
MITP_BUDGET = "MITP (defaults: 2.07M on L/14)"
LORA = "LoRA r=8 (attention of both towers) + MITP's head"
LORA_AT_MITP_EPOCHS = "LoRA at MITP's epochs (r=8, attention of both towers) + MITP's head"
"""On the grid tasks, whose target names LoRA, LoRA at its picked rate for the epochs MITP's defaults picked (its
own grid stops at 3 epochs, affordable on every table): a target met against fewer epochs is not met."""


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

    @property
    def folder(self) -> str:
        """The backbone's folder on this machine (`backbone` is recorded relative to the repository)."""
        return str(ROOT / self.backbone)


def recorded_path(folder: str) -> str:
    """A backbone folder as results record it: relative to the repository when inside it, so that the results of
    one clone key the runs of another."""
    path = Path(folder).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass
class Study:
    backbones: dict[str, str]
    results: Path
    workers: int
    max_train: Optional[int] = None
    done: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.backbones = {name: recorded_path(folder) for name, folder in self.backbones.items()}

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
    from transformers.utils import logging

    torch.set_num_threads(1)  # the study runs one process per core
    logging.disable_progress_bar()


def run_of(spec: Spec) -> Run:
    """The run a spec keys: its options over `recorded_defaults` for the backbone's text width."""
    from transformers import AutoConfig

    from mitp_bench.experiment import Run

    text_width = AutoConfig.from_pretrained(spec.folder).text_config.hidden_size
    options = {**recorded_defaults(spec.method, text_width), **json.loads(spec.options)}
    return Run(spec.folder, spec.task, spec.method, options, spec.learning_rate, spec.epochs, spec.seed)


def _execute(spec: Spec) -> dict:
    from transformers import AutoProcessor

    from mitp_bench.experiment import execute, load_data

    data_key = (spec.backbone, spec.task, spec.max_train)
    if data_key not in _CACHE:
        _CACHE.clear()  # one task's tensors at a time
        data = load_data(spec.task, AutoProcessor.from_pretrained(spec.folder))
        if spec.max_train is not None:
            data = data.shortened(spec.max_train)
        _CACHE[data_key] = data
    return execute(run_of(spec), _CACHE[data_key], _CACHE.setdefault("features", {}))


# ---------------------------------------------------------------------------------------------------- the plan


@dataclass
class Row:
    """A row of the table: one method; its setting (rate, epochs) picked on validation with the first seed, from
    `rates` at `epochs[0]` and then `epochs[1:]` at the better rate; then every seed at that setting."""

    name: str
    method: str
    options: dict
    rates: tuple[float, ...]
    epochs: tuple[float, ...]
    seeds: tuple[int, ...] = SEEDS


def baseline_rows(task_kind: str, budget: Budget = Budget()) -> list[Row]:
    public = task_kind in PUBLIC_KINDS
    rows = [] if public else [Row("zero-shot (the backbone's own prediction)", "zero_shot", {}, (0.0,), (1.0,), (0,))]
    for head in budget.heads:
        if head == "zero_shot_init" and task_kind not in ("either_or", "multi_label"):
            continue  # its labels are not classes the backbone can name
        name = f"late fusion, {head.replace('_', '-')} head, {budget.converged_epochs:g} epochs"
        rows.append(Row(name, "head", {"head": head}, budget.grid, (budget.converged_epochs,), budget.seeds))
    grid = task_kind.startswith("grid")
    full_finetune_epochs = budget.grid_full_finetune_epochs if grid else budget.full_finetune_epochs
    trained = (
        (LORA, "lora", {"warm_start": True}, budget.lora_epochs),
        ("full fine-tuning + MITP's head", "full_finetune", {"warm_start": True}, full_finetune_epochs),
    )
    if public:
        trained += ((MITP_BUDGET, "mitp", {"warm_start": True, **DEFAULTS}, budget.mitp_epochs),)
    else:
        trained += (
            (MITP_WIDE, "mitp", {"warm_start": True, **WIDE}, budget.mitp_epochs),
            (MITP_POOLED, "mitp", {"warm_start": True}, budget.mitp_epochs),
        )
    rates = {"full_finetune": budget.full_finetune_grid}
    rows += [Row(name, method, options, rates.get(method, budget.expensive_grid), epochs, budget.seeds)
             for name, method, options, epochs in trained]  # fmt: skip
    return rows


def spec(study: Study, backbone: str, task: str, row: Row, rate: float, epochs: float, seed: int) -> Spec:
    options = json.dumps(row.options, sort_keys=True)
    return Spec(backbone, task, row.method, options, rate, epochs, seed, study.max_train)


def screening(study: Study, backbone: str, task: str, row: Row, stage: int) -> list[Spec]:
    """The first seed's runs of a row: every rate at the first epochs (stage 0), or the better rate at the other
    epochs (stage 1)."""
    if stage == 0:
        return [spec(study, backbone, task, row, rate, row.epochs[0], row.seeds[0]) for rate in row.rates]
    rate = best(study, screening(study, backbone, task, row, 0)).learning_rate
    return [spec(study, backbone, task, row, rate, epochs, row.seeds[0]) for epochs in row.epochs[1:]]


def best(study: Study, specs: list[Spec]) -> Spec:
    from mitp_bench.experiment import score

    return max(specs, key=lambda s: score(study.get(s)["validation"]))


def chosen(study: Study, backbone: str, task: str, row: Row) -> Spec:
    return best(study, screening(study, backbone, task, row, 0) + screening(study, backbone, task, row, 1))


def summarize(study: Study, backbone: str, task: str, row: Row) -> dict:
    from mitp_bench.experiment import score

    pick = chosen(study, backbone, task, row)
    records = [study.get(spec(study, backbone, task, row, pick.learning_rate, pick.epochs, s)) for s in row.seeds]
    tests = [score(r["test"]) for r in records]
    summary = {
        "name": row.name,
        "learning_rate": pick.learning_rate,
        "epochs": pick.epochs,
        "trainable": records[0]["trainable"],
        "validation": score(records[0]["validation"]),
        "test_mean": statistics.mean(tests),
        "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "test": [r["test"] for r in records],
        "seconds": statistics.mean(r["seconds"] for r in records),
    }
    if "by_negative" in records[0]:
        for kind in ("presence", "binding_balanced"):
            summary[kind] = statistics.mean(r["by_negative"]["test"][kind] for r in records)
    if all("by_missing" in r for r in records):  # runs from before the breakdown was recorded have none
        subsets = records[0]["by_missing"]["test"]
        summary["by_missing"] = {
            name: {key: statistics.mean(r["by_missing"]["test"][name][key] for r in records) for key in subset}
            for name, subset in subsets.items()
        }
    return summary


def screened_so_far(study: Study, path: str, task: str, row: Row) -> Row:
    """The row restricted to the rates its first seed has run at its first epochs, its name saying which are missing
    (a row given a rate more, as a default candidate was, would otherwise vanish from the tables until it ran)."""
    rates = tuple(rate for rate in row.rates
                  if spec(study, path, task, row, rate, row.epochs[0], row.seeds[0]).key in study.done)  # fmt: skip
    if not rates or rates == row.rates:
        return row
    missing = ", ".join(f"{rate:g}" for rate in row.rates if rate not in rates)
    return replace(row, name=f"{row.name} (not yet screened at {missing})", rates=rates)


def summarize_done(study: Study, backbone: str, task: str, rows: list[Row]) -> list[dict]:
    """The rows whose runs are in the results file, in order: a row with its first seeds done shows those (its seeds
    column says how many, as for a screened variant), one with some of its rates not yet screened is picked among
    those it ran (`screened_so_far`), a row without its setting's first seed is left out."""
    summaries = []
    for row in (screened_so_far(study, study.backbones[backbone], task, row) for row in rows):
        for done in range(len(row.seeds), 0, -1):
            try:
                summaries.append(
                    summarize(study, study.backbones[backbone], task, replace(row, seeds=row.seeds[:done]))
                )
                break
            except KeyError:
                continue
    return summaries


def run_table(study: Study, backbone: str, task: str, rows: list[Row]) -> list[dict]:
    """Every row's screening with the first seed (both stages), then the other seeds at each row's setting."""
    path = study.backbones[backbone]
    for stage in (0, 1):
        study.run([s for row in rows for s in screening(study, path, task, row, stage)])
    picks = {row.name: chosen(study, path, task, row) for row in rows}
    study.run([spec(study, path, task, row, picks[row.name].learning_rate, picks[row.name].epochs, seed)
               for row in rows for seed in row.seeds[1:]])  # fmt: skip
    return [summarize(study, path, task, row) for row in rows]


def defaults_rows(previous: dict, budget: Budget = Budget()) -> list[Row]:
    """The defaults with the hub reading prompts only, then the package's defaults: every seed, the rate picked on
    validation from the rates of the rows that run the backbone, at the epochs the head on pooled features
    (`previous`, its summary) picked. A candidate default picks its own rate: held to another row's rate it can lose
    on a difference of one validation sample."""
    return [Row(name, "mitp", {"warm_start": True, **options}, budget.expensive_grid, (previous["epochs"],),
                budget.seeds)
            for name, options in ((MITP_READS_PROMPTS, READING_PROMPTS), (MITP_BUDGET, DEFAULTS))]  # fmt: skip


def equal_epochs_rows(summaries: list[dict], budget: Budget = Budget()) -> list[Row]:
    """LoRA at the rate its row picked for the epochs the defaults picked (both from `summaries`, a table so far),
    every seed; none where either row is missing or LoRA's own setting already has as many epochs."""
    mitp, lora = defaults_of(summaries), next((s for s in summaries if s["name"] == LORA), None)
    if mitp is None or lora is None or lora["epochs"] >= mitp["epochs"]:
        return []
    return [Row(LORA_AT_MITP_EPOCHS, "lora", {"warm_start": True}, (lora["learning_rate"],), (mitp["epochs"],),
                budget.seeds)]  # fmt: skip


def variant_rows(previous: dict, confirmed: tuple[str, ...] = ()) -> list[Row]:
    """MITP's variants at the setting the head on pooled features (`previous`, its summary) picked: one seed each to
    screen, every seed for those whose names start with one of `confirmed` (a screened winner's claim needs the seeds
    the other rows have)."""
    return [
        Row(
            row_name,
            "mitp",
            {"warm_start": True, **options},
            (previous["learning_rate"],),
            (previous["epochs"],),
            SEEDS if row_name.startswith(confirmed) else (0,),
        )  # fmt: skip
        for row_name, options in zip(VARIANT_NAMES, VARIANTS.values(), strict=True)
    ]


# ---------------------------------------------------------------------------------------------------- report


def markdown(backbone: str, task: str, summaries: list[dict], multi_label: bool) -> str:
    metric = "mean of F1-macro and F1-micro" if multi_label else "accuracy"
    negatives = any("presence" in s for s in summaries)
    extra = " presence | binding |" if negatives else ""
    lines = [
        f"**{backbone} backbone, {task}** ({metric}; test: mean ± std over the seeds"
        + (
            "; presence and binding: balanced test accuracy on statements that hold against absent items and "
            "against items of another cell"
            if negatives
            else ""
        )
        + ")",  # fmt: skip
        "",
        f"| method | trainable | lr, epochs (chosen on validation) | validation | test | seeds |{extra}",
        "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if negatives else ""),
    ]
    for s in summaries:
        setting = "-" if s["trainable"] == 0 else f"{s['learning_rate']:g}, {s['epochs']:g}"
        test = f"{s['test_mean']:.3f} ± {s['test_std']:.3f}" if len(s["test"]) > 1 else f"{s['test_mean']:.3f}"
        line = f"| {s['name']} | {s['trainable']:,} | {setting} | {s['validation']:.3f} | {test} | {len(s['test'])} |"
        if negatives:
            line += f" {s['presence']:.3f} | {s['binding_balanced']:.3f} |"
        lines.append(line)
    return "\n".join(lines)


def screening_so_far(study: Study, backbone: str, task: str, rows: list[Row]) -> str:
    """Every first-seed run of a table the results file holds, row by row: where a study stopped before its tables
    were complete. Not a result: the settings are not all picked yet and one seed says nothing of the spread."""
    from mitp_bench.experiment import score

    path = study.backbones[backbone]
    lines = []
    for row in rows:
        first = spec(study, path, task, row, 0.0, 0.0, row.seeds[0])
        fields = ("backbone", "task", "method", "options", "seed", "max_train")
        wanted = tuple(getattr(first, field) for field in fields)
        runs = [r for r in study.done.values() if tuple(r[field] for field in fields) == wanted]
        for r in sorted(runs, key=lambda r: (r["epochs"], r["learning_rate"])):
            setting = ("-", "-") if r["trainable"] == 0 else (f"{r['learning_rate']:g}", f"{r['epochs']:g}")
            lines.append(f"| {row.name} | {r['trainable']:,} | {' | '.join(setting)} | "
                         f"{score(r['validation']):.3f} | {score(r['test']):.3f} |")  # fmt: skip
    if not lines:
        return ""
    header = [
        f"**{backbone} backbone, {task}: the screening so far** (seed 0 only; each run as measured)",
        "",
        "| method | trainable | lr | epochs | validation | test |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(header + lines)


SUMMARY_COLUMNS = (
    ("zero-shot", "zero-shot"),
    ("late fusion, linear", "late fusion, linear head"),
    ("late fusion, agreement", "late fusion, agreement head"),
    ("late fusion, MLP", "late fusion, mlp head"),
    ("LoRA", LORA),
    ("LoRA, MITP's epochs", LORA_AT_MITP_EPOCHS),
    ("full fine-tuning", "full fine-tuning"),
    ("MITP, widths 512", MITP_WIDE),
    ("MITP, pooled-feature head", MITP_POOLED),
    ("MITP, hub reads prompts", MITP_READS_PROMPTS),
    ("MITP (defaults)", MITP_BUDGET),
)
"""The summary's columns and the row names they take."""


def defaults_of(summaries: list[dict]) -> Optional[dict]:
    """The defaults' row of a table (its name may say a rate it has not yet run), or None."""
    return next((s for s in summaries if s["name"].startswith(MITP_BUDGET)), None)


def summary(tables: dict) -> str:
    """One line per table: test mean ± std of each kind of row, best marked."""
    lines = [
        "| backbone, task | " + " | ".join(name for name, _ in SUMMARY_COLUMNS) + " |",
        "|---|" + "---:|" * len(SUMMARY_COLUMNS),
    ]
    for (backbone, task), summaries in tables.items():
        if defaults_of(summaries) is None:
            continue
        cells = []
        for _, prefix in SUMMARY_COLUMNS:
            matching = [s for s in summaries if s["name"].startswith(prefix)]
            cells.append(max(matching, key=lambda s: s["test_mean"]) if matching else None)
        top = max(c["test_mean"] for c in cells if c is not None)
        texts = [
            "-" if c is None else (f"{c['test_mean']:.3f}" + (f" ± {c['test_std']:.3f}" if len(c["test"]) > 1 else ""))
            for c in cells
        ]
        texts = [
            f"**{t}**" if c is not None and c["test_mean"] == top else t for t, c in zip(texts, cells, strict=True)
        ]
        lines.append(f"| {backbone}, {task} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def verdicts(task: str, summaries: list[dict], budget: Budget = Budget()) -> list[str]:
    """The study's targets, as measured on this table, with what the comparison still lacks (a
    rival that did not run, or ran at fewer epochs than MITP): a target met against less is not met."""
    from mitp_bench.tasks import task_parts

    by = {s["name"]: s for s in summaries}
    mitp = defaults_of(summaries)
    kind, _ = task_parts(task)
    late = max((s for n, s in by.items() if n.startswith("late fusion")), key=lambda s: s["test_mean"])
    peers = [late] + [by[n] for n in by if n.startswith(("LoRA", "full fine-tuning"))]
    strongest = max(peers, key=lambda s: s["test_mean"])
    lines = []
    if kind in PUBLIC_KINDS:
        margin = mitp["test_mean"] - strongest["test_mean"]
        lines.append(f"MITP {mitp['test_mean']:.3f} vs the best of late fusion, LoRA and full fine-tuning "
                     f"({strongest['name']}) {strongest['test_mean']:.3f}: {margin:+.3f} "
                     f"({'MITP leads' if margin > 0 else 'MITP does NOT lead'})")  # fmt: skip
    elif kind.startswith("grid"):
        margin = mitp["test_mean"] - strongest["test_mean"]
        lines.append(f"MITP {mitp['test_mean']:.3f} vs the best of late fusion, LoRA and full fine-tuning "
                     f"({strongest['name']}) {strongest['test_mean']:.3f}: {margin:+.3f} "
                     f"({'met' if margin >= 0.03 else 'NOT met'}: 3 points or more)")  # fmt: skip
    else:
        mlp = next(s for n, s in by.items() if n.startswith("late fusion, mlp"))
        margin = mitp["test_mean"] - mlp["test_mean"]
        lines.append(f"MITP vs the converged late-fusion MLP {mlp['test_mean']:.3f}: {margin:+.3f} "
                     f"({'met' if margin >= 0.01 else 'NOT met'}: 1 point or more)")  # fmt: skip
    full = next((s for n, s in by.items() if n.startswith("full fine-tuning")), None)
    if full is None:
        lines.append("MITP vs full fine-tuning: not measured (its row did not run), so no target above is settled")
    equal = by.get(LORA_AT_MITP_EPOCHS)
    if equal is not None and len(equal["test"]) < len(budget.seeds):
        lines.append(f"LoRA at MITP's {equal['epochs']:g} epochs: {len(equal['test'])} of {len(budget.seeds)} "
                     "seeds so far")  # fmt: skip
    elif equal is None and any(n.startswith("LoRA") for n in by) and max(budget.lora_epochs) < max(budget.mitp_epochs):
        lines.append(f"LoRA ran {max(budget.lora_epochs):g} epochs at most, MITP {max(budget.mitp_epochs):g}: "
                     "not yet compared at equal epochs")  # fmt: skip
    if kind in PUBLIC_KINDS:
        return lines  # one question: does MITP lead the rivals (LoRA at its epochs among them)
    if equal is not None and not kind.startswith("grid"):
        lines.append(f"MITP vs LoRA at MITP's {equal['epochs']:g} epochs {equal['test_mean']:.3f}: "
                     f"{mitp['test_mean'] - equal['test_mean']:+.3f} (no target here names LoRA)")  # fmt: skip
    if full is not None and not kind.startswith("grid"):
        gap = mitp["test_mean"] - full["test_mean"]
        lines.append(f"MITP vs full fine-tuning {full['test_mean']:.3f}: {gap:+.3f} "
                     f"({'met' if gap >= -0.01 else 'NOT met'}: within 1 point or above)")  # fmt: skip
    wide = by.get(MITP_WIDE)
    if wide is None:
        lines.append("the 2.0M budget against widths 512: not measured (their row did not run)")
    else:
        change = mitp["test_mean"] - wide["test_mean"]
        lines.append(f"the 2.0M budget against widths 512 {wide['test_mean']:.3f}: {change:+.3f} "
                     f"({'met' if change >= -0.005 else 'NOT met'}: losing 0.5 point at most)")  # fmt: skip
    for name, earlier in (("the head on pooled features", by.get(MITP_POOLED)),
                          ("the hub reading prompts only", by.get(MITP_READS_PROMPTS))):  # fmt: skip
        if earlier is not None:
            lines.append(f"the defaults against {name} {earlier['test_mean']:.3f}: "
                         f"{mitp['test_mean'] - earlier['test_mean']:+.3f}")  # fmt: skip
    zero_shot = by.get("zero-shot (the backbone's own prediction)")
    if zero_shot is not None and kind.startswith("grid"):
        lines.append(f"zero-shot on the named cell's crop (told the layout): {zero_shot['test_mean']:.3f}")
    return lines


def machine() -> str:
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {date.today()}"


def build(backbone: str) -> str:
    """Build (or reuse) a backbone of the study by name; its folder."""
    from mitp_bench.backbone import PRESETS, build_backbone, preset_dir
    from mitp_bench.dino import DEFAULT_DIR, build_dino_backbone

    if backbone == "dino":
        build_dino_backbone(DEFAULT_DIR)
        return str(DEFAULT_DIR)
    build_backbone(preset_dir(backbone), PRESETS[backbone])
    return str(preset_dir(backbone))


def require_matches(flag: str, prefixes: tuple[str, ...], names: set[str], kind: str) -> None:
    """Stop before anything runs when a name given to `flag` starts no row: a misspelt --skip would run the hours
    it meant to leave out, a misspelt --confirm would screen its variant with one seed in silence."""
    unmatched = [prefix for prefix in prefixes if not any(name.startswith(prefix) for name in names)]
    if unmatched:
        raise SystemExit(f"{flag} {unmatched} names no {kind}; the names are {sorted(names)}")


def main() -> None:
    from mitp_bench.tasks import task_parts

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", help="name=folder pairs, comma-separated (default: the DINOv2 build)")
    parser.add_argument("--tasks", help="comma-separated (default: the study's plan, PLAN)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_accuracy.jsonl")
    parser.add_argument("--report", type=Path, help="write the tables (Markdown) here")
    parser.add_argument("--quick", action="store_true", help="a few training samples, one task, no variants")
    parser.add_argument(
        "--skip",
        default="",
        help="leave out the rows whose name starts with one of these (semicolons part them: names hold commas), "
        "e.g. 'full fine-tuning' where its hours do not fit; a later run without it resumes the table",
    )
    parser.add_argument(
        "--confirm",
        default="",
        help="run every seed for the variants whose names start with one of these (semicolons part them), "
        "e.g. 'MITP, head reads the hub memory' once it won its screening (a name matching no variant is an error)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="tables of what the results file holds (every seed a variant has, without --confirm); run nothing",
    )
    args = parser.parse_args()

    given = dict(pair.split("=", 1) for pair in args.backbones.split(",")) if args.backbones else None
    plan = [(b, t) for b, t in PLAN] if given is None else [(b, "either_or") for b in given]
    if args.tasks:
        plan = [(b, t) for b in (given or {"dino": None}) for t in args.tasks.split(",")]
    if args.quick:
        plan = plan[:1]
    backbones = dict(given or {})
    for backbone, _ in plan:
        if backbone not in backbones:
            backbones[backbone] = str(ROOT / ".cache" / "dino-backbone") if args.report_only else build(backbone)
    study = Study(backbones, args.results, args.workers, max_train=64 if args.quick else None)
    study.load()
    budget = QUICK if args.quick else Budget()
    sections = [f"Machine: {machine()}."]
    skipped = tuple(name for name in args.skip.split(";") if name)
    confirmed = tuple(name for name in args.confirm.split(";") if name)
    rows_named = {row.name for _, task in plan for row in baseline_rows(task_parts(task)[0], budget)}
    rows_named.add(LORA_AT_MITP_EPOCHS)
    require_matches("--skip", skipped, rows_named | set(VARIANT_NAMES), "row of this study")
    require_matches("--confirm", confirmed, set(VARIANT_NAMES), "variant")

    # --report-only tables every seed the results file holds for each variant, confirmed in this call or not: a
    # table of a confirmed variant must not fall back to its one screening seed because --confirm was not repeated.
    every_seed_of = tuple(VARIANT_NAMES) if args.report_only else confirmed

    def kept(rows: list[Row]) -> list[Row]:
        return [row for row in rows if not skipped or not row.name.startswith(skipped)]

    tables, rows_of = {}, {}
    for backbone, task in plan:
        kind = task_parts(task)[0]
        rows = rows_of[backbone, task] = kept(baseline_rows(kind, budget))
        measure = summarize_done if args.report_only else run_table
        tables[backbone, task] = measure(study, backbone, task, rows)
        previous = next((s for s in tables[backbone, task] if s["name"] == MITP_POOLED), None)
        if previous is not None:
            screened = budget.variants and task in SCREENED
            later = [*defaults_rows(previous, budget), *(variant_rows(previous, every_seed_of) if screened else [])]
            tables[backbone, task] += measure(study, backbone, task, kept(later))
        tables[backbone, task] += measure(
            study, backbone, task, kept(equal_epochs_rows(tables[backbone, task], budget))
        )
    sections.append(summary(tables))
    print(f"\n{sections[-1]}\n", flush=True)
    for (backbone, task), summaries in tables.items():
        if defaults_of(summaries) is None:
            continue
        table = markdown(backbone, task, summaries, task_parts(task)[0] == "multi_label")
        checks = "\n".join(f"- {line}" for line in verdicts(task, summaries, budget))
        sections.append(f"{table}\n\n{checks}")
        print(f"\n{table}\n\n{checks}\n", flush=True)
    if args.report_only:
        for backbone, task in plan:
            if defaults_of(tables[backbone, task]) is not None:
                continue  # tabled above
            so_far = screening_so_far(study, backbone, task, rows_of[backbone, task])
            if so_far:
                sections.append(so_far)
                print(f"\n{so_far}\n", flush=True)
    if args.report:
        args.report.write_text("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    sys.exit(main())
