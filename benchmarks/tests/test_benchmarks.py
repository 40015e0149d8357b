"""The efficiency benchmark runs and reports what the README shows (a tiny backbone: mechanics, not numbers)."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, script_module
from peft import LoraConfig, get_peft_model

from mitp_peft import MITPConfig
from mitp_peft.tuner.placement import resolve_widths


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_in_smoke_mode(tmp_path):
    """Every step of the GPU check on tiny sizes on the CPU: the device tests, the efficiency table (whose parameter
    counts are those of the methods, built here independently) and the serving table, in one JSON and one table."""
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--output", str(tmp_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=dict(os.environ, HF_HUB_OFFLINE="1")
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [step["step"] for step in report["steps"]] == ["device tests", "efficiency tiny", "serving"]
    assert all(step["ok"] for step in report["steps"]) and "1 passed" in report["steps"][0]["output"]

    measured = json.loads((tmp_path / "efficiency_tiny.json").read_text())
    rows = {r["method"]: r for r in measured["rows"]}
    assert set(rows) == {"frozen", "mitp", "lora", "full_ft"} and measured["failed"] == {}
    assert "bfloat16" in measured["title"]  # the GPU's dtype: float32 heads on a bf16 backbone must work
    efficiency = script_module("benchmarks/efficiency.py")
    mitp = get_peft_model(efficiency.build_backbone("tiny"), MITPConfig(num_labels=efficiency.NUM_LABELS))
    assert rows["mitp"]["trainable_params"] == mitp.get_nb_trainable_parameters()[0]
    lora = get_peft_model(
        efficiency.build_backbone("tiny"), LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    )
    head = (64 + 64 + 1) * efficiency.NUM_LABELS
    assert rows["lora"]["trainable_params"] == lora.get_nb_trainable_parameters()[0] + head

    table = (tmp_path / "gpu_check.md").read_text()
    for method in rows:
        assert f"| {efficiency.DESCRIPTIONS[method]} |" in table, method
    for line in ("MITP training throughput >= 1.5x lora's", "| one adapter per pair (mixed) | 4 |",
                 "| every adapter on every pair (fan-out) | 16 |"):  # fmt: skip
        assert line in table, line


@pytest.mark.slow
def test_the_gpu_check_runs_only_the_parts_asked_for(tmp_path):
    """A GPU lease whose calls are short runs the check in parts: only those run, and a misspelt part is refused."""
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--output", str(tmp_path)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([*command, "--parts", "serving"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [step["step"] for step in report["steps"]] == ["serving"]
    assert "## serving" in (tmp_path / "gpu_check.md").read_text()
    refused = subprocess.run([*command, "--parts", "tests,l14"], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "unknown parts ['l14']" in refused.stderr


def test_efficiency_reports_a_failing_method_and_still_measures_the_others(monkeypatch):
    """One method's failure (on the GPU: a dtype clash in a baseline) must not cost the rows measured beside it."""
    efficiency = script_module("benchmarks/efficiency.py")

    def worker(command, **kwargs):
        method = command[command.index("--worker") + 1]
        if method == "lora":
            return subprocess.CompletedProcess(command, 1, "", "RuntimeError: mat1 and mat2 must have the same dtype")
        row = dict(method=method, train_s=3.0, train_ratio=3.0 if method == "mitp" else 1.0, peak_bytes=10)
        return subprocess.CompletedProcess(command, 0, json.dumps(row) + "\n", "")

    monkeypatch.setattr(efficiency.subprocess, "run", worker)
    rows, failed = efficiency.run_all("tiny", 4, 1, "cpu", "bfloat16", ["frozen", "lora", "mitp"], "inductor")
    assert [r["method"] for r in rows] == ["frozen", "mitp"] and rows[1]["train_ratio"] == 3.0
    assert rows[1]["peak_ratio"] == 1.0
    assert list(failed) == ["lora"] and "same dtype" in failed["lora"]
    with pytest.raises(RuntimeError, match="frozen reference failed"):
        efficiency.run_all("tiny", 4, 1, "cpu", "bfloat16", ["lora"], "inductor")


def study_command(script: str, backbone: Path, results: Path, report: Path) -> list[str]:
    """A study script in --quick mode on one backbone."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--backbones", f"demo={backbone}"]
    return command + ["--results", str(results), "--report", str(report)]


def run_study(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_accuracy_study_quick_mode_runs_every_stage_and_resumes(tiny_backbone, tmp_path):
    folder, _, _ = tiny_backbone
    results, report = tmp_path / "results.jsonl", tmp_path / "results.md"
    command = study_command("accuracy.py", folder, results, report)
    run_study(command)
    accuracy = script_module("benchmarks/accuracy.py")
    rows = accuracy.baseline_rows("either_or", accuracy.QUICK)
    rows += accuracy.defaults_rows({"epochs": accuracy.QUICK.mitp_epochs[0]}, accuracy.QUICK)
    text = report.read_text()
    for row in rows:
        assert f"| {row.name} |" in text, row.name
    # Every row's rates with one seed, its other epochs at the better rate, then its other seeds at the setting.
    expected = sum(len(row.rates) + len(row.epochs) - 1 + len(row.seeds) - 1 for row in rows)
    assert len(results.read_text().splitlines()) == expected
    assert "MITP" in text and "± " in text and "vs the converged late-fusion MLP" in text
    summary = next(line for line in text.splitlines() if line.startswith("| demo, either_or |"))
    mitp_row = next(line for line in text.splitlines() if line.startswith(f"| {accuracy.MITP_BUDGET} |"))
    assert summary.split(" | ")[-1].strip("*| ") == mitp_row.split(" | ")[4]  # the summary's MITP cell is its test
    run_study(command)
    assert len(results.read_text().splitlines()) == expected  # resumed: nothing rerun
    # Rows left out by the start of their name (names hold commas, so semicolons part them): they go, the rest stay.
    skipped, gone = tmp_path / "skipped.md", ("full fine-tuning", "MITP, widths 512")
    run_study([*study_command("accuracy.py", folder, results, skipped), "--report-only", "--skip", ";".join(gone)])
    kept = skipped.read_text()
    names = {line.split(" | ")[0].lstrip("| ") for line in kept.splitlines() if line.startswith("| ")}
    assert accuracy.MITP_BUDGET in names and not any(name.startswith(gone) for name in names)
    assert names >= {row.name for row in rows if not row.name.startswith(gone)}
    assert "MITP vs full fine-tuning: not measured" in kept

    # A study stopped after its first four runs: --report-only shows them as the screening so far, and no table.
    partial, partial_report = tmp_path / "partial.jsonl", tmp_path / "partial.md"
    partial.write_text("\n".join(results.read_text().splitlines()[:4]) + "\n")
    run_study([*study_command("accuracy.py", folder, partial, partial_report), "--report-only"])
    so_far = partial_report.read_text()
    assert "the screening so far" in so_far and f"| {accuracy.MITP_BUDGET} |" not in so_far
    assert sum(line.startswith(("| zero-shot", "| late fusion")) for line in so_far.splitlines()) == 4


def test_grid_verdicts_say_what_the_comparison_still_lacks():
    """A grid target "met" against late fusion and a LoRA trained fewer epochs than MITP is not settled: the verdicts
    say that full fine-tuning did not run and that the epochs differ; with both in place, neither caveat."""
    accuracy = script_module("benchmarks/accuracy.py")

    def row(name: str, test: float) -> dict:
        return {"name": name, "test_mean": test}

    summaries = [
        row("late fusion, mlp head, 20 epochs", 0.575),
        row("LoRA r=8", 0.576),
        row(accuracy.MITP_BUDGET, 0.652),
    ]
    lines = accuracy.verdicts("grid_matching", summaries)
    assert lines[0].endswith("(LoRA r=8) 0.576: +0.076 (met: 3 points or more)")
    assert "full fine-tuning: not measured" in lines[1]
    assert lines[2] == "LoRA ran 3 epochs at most, MITP 10: not yet compared at equal epochs"
    even = accuracy.Budget(lora_epochs=(1.0, 3.0, 10.0))
    settled = accuracy.verdicts("grid_matching", [*summaries, row("full fine-tuning + MITP's head", 0.6)], even)
    assert len(settled) == 2 and settled[0].startswith("MITP 0.652 vs the best")
    assert settled[1] == "the 2.0M budget against widths 512: not measured (their row did not run)"


def test_a_public_table_asks_only_whether_mitp_leads_lora_at_its_epochs_included():
    """easy-VQA's table has one verdict: MITP against the best rival, LoRA at MITP's epochs among them, and how far
    that comparison is settled; the other tables' targets (the late-fusion margin, the budget's widths) are not its."""
    accuracy = script_module("benchmarks/accuracy.py")
    summaries = [
        {"name": "late fusion, mlp head, 20 epochs", "test_mean": 0.833},
        {"name": accuracy.LORA, "test_mean": 0.906},
        {"name": "full fine-tuning + MITP's head", "test_mean": 0.933},
        {"name": accuracy.MITP_BUDGET, "test_mean": 0.967},
        {"name": accuracy.LORA_AT_MITP_EPOCHS, "test_mean": 0.97, "epochs": 10.0, "test": [0.97]},
    ]
    lines = accuracy.verdicts("easy_vqa", summaries)
    assert lines[0] == (
        f"MITP 0.967 vs the best of late fusion, LoRA and full fine-tuning ({accuracy.LORA_AT_MITP_EPOCHS}) 0.970: "
        "-0.003 (MITP does NOT lead)"
    )
    assert lines[1:] == ["LoRA at MITP's 10 epochs: 1 of 3 seeds so far"]


def test_tables_hold_the_defaults_to_lora_at_mitps_epochs():
    """On every table LoRA also runs at MITP's epochs, at the rate its own row picked, every seed; a grid verdict
    compares against it as soon as its first seed is in (a stronger rival turns "met" into "NOT met") and says how
    many seeds it has until it has them all; a single-item table shows it beside MITP, which no target there asks."""
    accuracy = script_module("benchmarks/accuracy.py")
    lora = {"name": accuracy.LORA, "learning_rate": 1e-3, "epochs": 3.0, "test_mean": 0.652}
    mitp = {"name": f"{accuracy.MITP_BUDGET} (not yet screened at 0.0001)", "epochs": 10.0, "test_mean": 0.684}
    (row,) = accuracy.equal_epochs_rows([lora, mitp])
    assert (row.name, row.method, row.rates, row.epochs, row.seeds) == (
        accuracy.LORA_AT_MITP_EPOCHS, "lora", (1e-3,), (10.0,), accuracy.SEEDS
    )  # fmt: skip
    assert row.options == {"warm_start": True}  # the LoRA row's options: its seed-0 runs are keyed alike
    assert accuracy.equal_epochs_rows([{**lora, "epochs": 10.0}, mitp]) == []
    assert accuracy.equal_epochs_rows([lora]) == []

    full = {"name": "full fine-tuning + MITP's head", "test_mean": 0.540}
    late = {"name": "late fusion, mlp head, 20 epochs", "test_mean": 0.444}
    equal = {"name": accuracy.LORA_AT_MITP_EPOCHS, "epochs": 10.0, "test_mean": 0.747, "test": [0.747]}
    rows_without = [late, lora, full, mitp]
    lines = accuracy.verdicts("grid_locating", [*rows_without, equal])
    assert lines[0].endswith(f"({accuracy.LORA_AT_MITP_EPOCHS}) 0.747: -0.063 (NOT met: 3 points or more)")
    assert lines[1] == "LoRA at MITP's 10 epochs: 1 of 3 seeds so far"
    settled = accuracy.verdicts("grid_locating", [*rows_without, {**equal, "test": [0.747] * 3}])
    assert not any("seeds so far" in line or "equal epochs" in line for line in settled)
    without = accuracy.verdicts("grid_locating", rows_without)
    assert without[0].endswith("0.652: +0.032 (met: 3 points or more)")
    assert without[1] == "LoRA ran 3 epochs at most, MITP 10: not yet compared at equal epochs"
    single = accuracy.verdicts("matching", rows_without)
    assert "LoRA ran 3 epochs at most, MITP 10: not yet compared at equal epochs" in single
    assert not any("no target here names LoRA" in line for line in single)
    settled = accuracy.verdicts("matching", [*rows_without, {**equal, "test": [0.747] * 3}])
    assert not any("seeds so far" in line or "equal epochs" in line for line in settled)
    assert "MITP vs LoRA at MITP's 10 epochs 0.747: -0.063 (no target here names LoRA)" in settled


def test_verdicts_hold_the_defaults_to_the_wide_widths_and_show_them_against_the_earlier_forms():
    """The rule for a default within the budget: no task loses more than half a point against the 3.2M widths (512
    wide). The defaults are held to it, and their change against the head on pooled features is shown."""
    accuracy = script_module("benchmarks/accuracy.py")
    summaries = [
        {"name": "late fusion, mlp head, 20 epochs", "test_mean": 0.910},
        {"name": accuracy.MITP_WIDE, "test_mean": 0.929},
        {"name": accuracy.MITP_POOLED, "test_mean": 0.910},
        {"name": f"{accuracy.MITP_BUDGET} (not yet screened at 0.0001)", "test_mean": 0.925},
    ]
    lines = accuracy.verdicts("matching", summaries, accuracy.Budget(lora_epochs=(10.0,)))
    assert lines[0] == "MITP vs the converged late-fusion MLP 0.910: +0.015 (met: 1 point or more)"
    assert "the 2.0M budget against widths 512 0.929: -0.004 (met: losing 0.5 point at most)" in lines
    assert lines[-1] == "the defaults against the head on pooled features 0.910: +0.015"
    reading_prompts = [*summaries, {"name": accuracy.MITP_READS_PROMPTS, "test_mean": 0.919}]
    lines = accuracy.verdicts("matching", reading_prompts, accuracy.Budget(lora_epochs=(10.0,)))
    assert lines[-1] == "the defaults against the hub reading prompts only 0.919: +0.006"
    summaries[-1]["test_mean"] = 0.920
    lines = accuracy.verdicts("matching", summaries, accuracy.Budget(lora_epochs=(10.0,)))
    assert "the 2.0M budget against widths 512 0.929: -0.009 (NOT met: losing 0.5 point at most)" in lines


def test_confirmed_variants_get_every_seed_and_the_others_one():
    accuracy = script_module("benchmarks/accuracy.py")
    rows = accuracy.variant_rows({"learning_rate": 1e-3, "epochs": 10.0}, ("MITP, head reads the hub memory",))
    seeds = {row.name: row.seeds for row in rows}
    assert seeds.pop("MITP, head reads the hub memory") == accuracy.SEEDS == (0, 1, 2)
    assert set(seeds.values()) == {(0,)} and len(seeds) == len(accuracy.VARIANTS) - 1
    assert all(row.epochs == (10.0,) and row.rates == (1e-3,) for row in rows)
    options = [{"warm_start": True, **variant} for variant in accuracy.VARIANTS.values()]
    assert [row.options for row in rows] == options  # over the keying baseline, as they were screened


def test_the_defaults_rows_run_the_package_defaults_and_pick_their_own_rate():
    """The study keys runs by options over a fixed baseline (the head on pooled features); the defaults row's options
    must give the package's defaults on the study's backbone (MiniLM: text width 384), the row of the hub reading
    prompts those defaults with that one change, and the baseline itself the head on pooled features."""
    accuracy = script_module("benchmarks/accuracy.py")
    reading_prompts, row = accuracy.defaults_rows({"learning_rate": 1e-4, "epochs": 10.0})
    assert (reading_prompts.name, row.name) == (accuracy.MITP_READS_PROMPTS, accuracy.MITP_BUDGET)
    for each in (reading_prompts, row):
        assert each.seeds == accuracy.SEEDS and each.rates == accuracy.EXPENSIVE_GRID and each.epochs == (10.0,)

    def resolved(**options) -> tuple:
        config = MITPConfig(num_labels=10, **options)
        resolve_widths(config, 384)
        return config.head_uses_memory, config.head_hidden_size, config.translator_hidden_size, config.hub_reads

    def as_run(row) -> dict:
        return {
            **accuracy.recorded_defaults("mitp", 384),
            **{k: v for k, v in row.options.items() if k != "warm_start"},
        }

    assert resolved(**as_run(row)) == resolved() == (True, 128, 128, "tokens")
    assert resolved(**as_run(reading_prompts)) == (True, 128, 128, "prompts")
    assert resolved(**accuracy.recorded_defaults("mitp", 384)) == (False, 192, 128, "prompts")


def test_a_stored_key_runs_over_the_keying_baseline_whatever_the_package_defaults(tiny_backbone):
    """Stored runs are keyed by options over a fixed baseline; `run_of` must turn a key back into that run (the
    package's defaults may move, and a run built from them would then mean another thing), and a key's own options
    must win over them."""
    accuracy = script_module("benchmarks/accuracy.py")

    def options(method: str, **given) -> dict:
        return accuracy.run_of(accuracy.Spec(str(tiny_backbone[0]), "either_or", method, json.dumps(given))).options

    recorded = {"head_uses_memory": False, "head_hidden_size": 192, "hub_reads": "prompts"}  # MiniLM: width 384
    assert options("mitp", warm_start=True) == {**recorded, "warm_start": True}
    assert options("mitp", **accuracy.DEFAULTS) == {"head_uses_memory": True, "head_hidden_size": 128,
                                                    "hub_reads": "tokens"}  # fmt: skip
    for method in ("head", "lora", "full_finetune"):  # their MLP head as wide as the baseline's MITP head
        assert options(method, head="mlp") == {"head_hidden_size": 192, "head": "mlp"}
    assert options("zero_shot") == {}


def test_interaction_on_a_pretrained_text_tower_is_open_from_the_first_step(tiny_backbone):
    """On real MiniLM weights a fresh adapter's hub lets the image move every pooled text feature by 5e-3 or more,
    2e-2 for the median pair (the first joint hub: 1e-5). This backbone's ViT trained two steps; on the DINOv2
    backbone the minimum is 5.0e-2 (docs/results.md)."""
    folder, _, _ = tiny_backbone
    interaction = script_module("benchmarks/interaction.py")
    changes = interaction.measure(str(folder), "gated", interaction.either_or_pairs(str(folder)))
    assert len(changes["text moved by the image"]) == interaction.PAIRS
    assert min(changes["text moved by the image"]) > 5e-3
    assert statistics.median(changes["text moved by the image"]) > 2e-2
    assert statistics.median(changes["image moved by the text"]) > 1e-3


@pytest.mark.slow
def test_missing_modality_study_quick_mode_runs_and_reports_the_targets(tiny_backbone, tmp_path):
    folder, _, _ = tiny_backbone
    results, report = tmp_path / "missing.jsonl", tmp_path / "missing.md"
    run_study(study_command("missing.py", folder, results, report))
    missing = script_module("benchmarks/missing.py")
    text = report.read_text()
    for row in missing.rows("both", quick=True):
        assert f"| {row.name} |" in text, row.name
    assert "both missing: aware" in text and "complete pairs: aware" in text
    assert "| complete pairs | text missing | image missing |" in text  # each row's score per subset
    records = [json.loads(line) for line in results.read_text().splitlines()]
    mitp = [r for r in records if r["method"] == "mitp"]
    aware = {r["trainable"] for r in mitp if '"missing_modalities": true' in r["options"]}
    unaware = {r["trainable"] for r in mitp if '"missing_modalities"' not in r["options"]}
    # The missing-aware adapter trains two prompts (8 x 384, MiniLM's width) and two placeholders (its pooled widths).
    assert aware == {unaware.pop() + 2 * 8 * 384 + 384 + 192} and not unaware


@pytest.mark.parametrize(
    ("flag", "given", "message", "listed"),
    [
        (
            "--skip",
            "full finetuning",
            "--skip ['full finetuning'] names no row of this study",
            "full fine-tuning + MITP's head",
        ),
        # The name without the tables' "MITP, " is an error, not a screening with one seed in silence.
        ("--confirm", "head reads the hub memory", "names no variant", "MITP, head reads the hub memory"),
    ],
)
def test_a_name_matching_no_row_stops_the_study_before_it_runs(tmp_path, flag, given, message, listed):
    """A misspelt --skip ('full finetuning') would otherwise run the row it meant to leave out, for hours."""
    command = [sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--backbones", f"dino={tmp_path}",
               "--tasks", "grid_matching", flag, given, "--report-only",
               "--results", str(tmp_path / "results.jsonl")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"))  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert listed in done.stderr


def test_report_only_shows_the_seeds_a_row_has_done():
    """A confirmed variant stopped after seed 1 is tabled with its two seeds (the seeds column says so), not dropped;
    a row without its setting's first seed is not tabled at all."""
    accuracy = script_module("benchmarks/accuracy.py")
    study = accuracy.Study({"dino": "folder"}, Path("unused.jsonl"), workers=1)
    row = accuracy.Row("MITP, M=16 prompts", "mitp", {"prompt_length": 16}, (1e-3,), (10.0,), (0, 1, 2))
    for seed, test in ((0, 0.8), (1, 0.9)):
        spec = accuracy.spec(study, "folder", "grid_matching", row, 1e-3, 10.0, seed)
        study.done[spec.key] = {
            "validation": {"accuracy": 0.7},
            "test": {"accuracy": test},
            "trainable": 5,
            "seconds": 1,
        }
    (summary,) = accuracy.summarize_done(study, "dino", "grid_matching", [row])
    assert len(summary["test"]) == 2 and summary["test_mean"] == pytest.approx(0.85)
    del study.done[accuracy.spec(study, "folder", "grid_matching", row, 1e-3, 10.0, 0).key]
    assert accuracy.summarize_done(study, "dino", "grid_matching", [row]) == []


def test_report_only_tables_a_row_with_a_rate_not_yet_screened_and_says_so():
    """A default candidate given a second rate after it ran at one: tabled from the rate it ran, its name saying
    which rate it lacks, not dropped; once both ran, picked between them on validation under its own name."""
    accuracy = script_module("benchmarks/accuracy.py")
    study = accuracy.Study({"dino": "folder"}, Path("unused.jsonl"), workers=1)
    row = accuracy.Row("MITP, candidate", "mitp", {}, (1e-4, 1e-3), (10.0,), (0,))

    def record(rate: float, validation: float, test: float) -> None:
        key = accuracy.spec(study, "folder", "grid_matching", row, rate, 10.0, 0).key
        study.done[key] = {"validation": {"accuracy": validation}, "test": {"accuracy": test}, "trainable": 5,
                           "seconds": 1}  # fmt: skip

    record(1e-3, 0.7, 0.8)
    (partial,) = accuracy.summarize_done(study, "dino", "grid_matching", [row])
    assert partial["name"] == "MITP, candidate (not yet screened at 0.0001)" and partial["test_mean"] == 0.8
    record(1e-4, 0.9, 0.6)
    (whole,) = accuracy.summarize_done(study, "dino", "grid_matching", [row])
    assert whole["name"] == "MITP, candidate" and whole["learning_rate"] == 1e-4 and whole["test_mean"] == 0.6


def scores_without_training(spec) -> dict:
    """A run's result by its seed alone, so a study's bookkeeping runs in seconds (module level: the workers get it
    by name)."""
    return {"validation": {"accuracy": 0.5}, "test": {"accuracy": 0.6 + spec.seed / 10}, "trainable": 1, "seconds": 0}


def test_report_only_tables_a_confirmed_variants_seeds_without_confirm_again(tmp_path, monkeypatch):
    """A study that confirmed a variant (3 seeds) and is reported later without --confirm tables all 3 seeds, not the
    one screening seed (the study's own runner and results file; only the training is replaced)."""
    accuracy = script_module("benchmarks/accuracy.py")
    results, report = tmp_path / "results.jsonl", tmp_path / "report.md"
    monkeypatch.setattr(accuracy, "_execute", scores_without_training)
    variant = "MITP, M=16"
    common = ["accuracy.py", "--backbones", f"dino={tmp_path}", "--tasks", "grid_matching", "--results", str(results)]
    for extra in (["--confirm", variant], ["--report-only", "--report", str(report)]):
        monkeypatch.setattr(sys, "argv", [*common, *extra])
        accuracy.main()
    rows = [line for line in report.read_text().splitlines() if line.startswith(f"| {variant}")]
    assert len(rows) == 1 and rows[0].endswith("| 0.700 ± 0.100 | 3 |"), rows
    screened_only = next(line for line in report.read_text().splitlines() if line.startswith("| MITP, K=6"))
    assert screened_only.endswith("| 1 |")
