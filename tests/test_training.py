"""examples/train.py end to end on a tiny backbone and a UPMC-Food101 folder: train, evaluate, save, reload."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from helpers import ROOT
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoProcessor

import mitp_peft
from mitp_peft.data import MITPCollator, load_food101
from mitp_peft.metrics import load_metric


@pytest.mark.slow
def test_train_script_saves_an_adapter_that_reloads_to_the_same_metrics(food101, base_folder, tmp_path):
    output = tmp_path / "run"
    command = [sys.executable, str(ROOT / "examples" / "train.py"), "--dataset", "food101", "--data_dir", str(food101)]
    command += ["--base_model", str(base_folder), "--output_dir", str(output), "--max_steps", "3"]
    command += ["--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "3", "--learning_rate", "0.01"]
    command += ["--use_cpu", "--report_to", "none", "--save_strategy", "no", "--num_interaction_layers", "2"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1")
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "trainable params:" in done.stdout
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "metrics.json"} <= {
        p.name for p in output.iterdir()
    }
    metrics = json.loads((output / "metrics.json").read_text())["eval"]
    card = ModelCard.load(output / "README.md")
    assert card.data.eval_results[0].metric_type == "accuracy"
    assert card.data.eval_results[0].metric_value == pytest.approx(metrics["eval_accuracy"])

    model = mitp_peft.from_pretrained(str(output))
    rows = list(load_food101(food101)["test"])
    batch = MITPCollator(AutoProcessor.from_pretrained(output), model.max_text_length)(rows)
    labels = batch.pop("labels")
    with torch.no_grad():
        out = model(**batch, labels=labels)
    accuracy = load_metric("accuracy").compute(predictions=out.logits.numpy(), references=labels.numpy())
    assert accuracy["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert out.loss.item() == pytest.approx(metrics["eval_loss"], rel=1e-5)


def start_script(script, food101, base_folder, output, *extra, launcher=(), env=None):
    """Start an example on the Food101 folder with the tiny base (one thread: two runs side by side use the two
    cores); `finish_script` waits for it."""
    command = [*launcher] if launcher else [sys.executable]
    command += [str(ROOT / "examples" / script), "--dataset", "food101", "--data_dir", str(food101)]
    command += ["--base_model", str(base_folder), "--output_dir", str(output), "--num_interaction_layers", "2", *extra]
    environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    return output, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    env=environment)  # fmt: skip


def finish_script(started, log=None):
    """The adapter's tensors and the metrics of a started run (and what it logged appended to `log`, when given)."""
    output, process = started
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors[-4000:]
    if log is not None:
        log.append(errors)
    return load_file(output / "adapter_model.safetensors"), json.loads((output / "metrics.json").read_text())


def run_script(*args, log=None, **kwargs):
    return finish_script(start_script(*args, **kwargs), log)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


# One optimizer step over the same 4 samples, in any order. SGD, because Adam's update hardly depends on the
# gradient's scale: it would hide a loss wrongly scaled by accumulation or by the number of processes.
ONE_STEP_OVER_FOUR = ("--max_train_samples", "4", "--max_steps", "1", "--learning_rate", "0.5")
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
ACCELERATE = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2")
ACCELERATE += ("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")


def free_port() -> str:
    """A port nobody listens on, so that two launches never meet on accelerate's default 29500."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.mark.slow
def test_accelerate_script_trains_saves_and_reloads(food101, base_folder, tmp_path):
    _, metrics = run_script("train_accelerate.py", food101, base_folder, tmp_path / "run", "--max_steps", "2",
                            "--per_device_train_batch_size", "2", "--cpu")  # fmt: skip
    model = mitp_peft.from_pretrained(str(tmp_path / "run"))
    rows = list(load_food101(food101)["test"])
    batch = MITPCollator(AutoProcessor.from_pretrained(tmp_path / "run"), model.max_text_length)(rows)
    labels = batch.pop("labels")
    with torch.no_grad():
        out = model(**batch, labels=labels)
    assert out.loss.item() == pytest.approx(metrics["eval"]["loss"], rel=1e-5)
    accuracy = load_metric("accuracy").compute(predictions=out.logits.numpy(), references=labels.numpy())
    assert accuracy["accuracy"] == metrics["eval"]["accuracy"]


@pytest.mark.slow
def test_the_extraction_cache_and_compiling_train_the_same_adapter(food101, base_folder, tmp_path):
    """One SGD step over the same 4 samples from the extraction cache (texts padded to the full room) and compiled
    (aot_eager: the compile path without inductor's minutes of code generation), as in plain eager."""
    common = (*ONE_STEP_OVER_FOUR, "--per_device_train_batch_size", "4", "--optimizer", "sgd", "--cpu")
    started = [start_script("train_accelerate.py", food101, base_folder, tmp_path / "plain", *common),
               start_script("train_accelerate.py", food101, base_folder, tmp_path / "both", *common,
                            "--cache_extraction", "--dynamo_backend", "aot_eager")]  # fmt: skip
    (plain, plain_metrics), (both, both_metrics) = [finish_script(run) for run in started]
    # Texts padded to the room and a compiled graph sum in other orders: float noise, which the hub's
    # standardization of small-spread prompts and the SGD rate of 0.5 grow to about 6e-4 of a tensor's largest entry
    # (a sample dropped or a mask wrong moves whole entries, 1e-1 and more).
    assert both.keys() == plain.keys()
    for key in plain:
        torch.testing.assert_close(both[key], plain[key], rtol=0, atol=2e-3 * plain[key].abs().max().item())
    assert both_metrics["eval"]["loss"] == pytest.approx(plain_metrics["eval"]["loss"], rel=1e-3)


@pytest.mark.slow
def test_accumulating_two_micro_batches_equals_one_batch(food101, base_folder, tmp_path):
    """One optimizer step over the same 4 samples: 2 x 2 accumulated, or 4 at once."""
    sgd = (*ONE_STEP_OVER_FOUR, "--optimizer", "sgd", "--cpu")
    started = [start_script("train_accelerate.py", food101, base_folder, tmp_path / "a", *sgd,
                            "--per_device_train_batch_size", "4"),
               start_script("train_accelerate.py", food101, base_folder, tmp_path / "b", *sgd,
                            "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2")]  # fmt: skip
    (whole, _), (halves, _) = [finish_script(run) for run in started]
    assert_same(halves, whole)


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_adapter(food101, base_folder, tmp_path):
    """4 steps of 2 samples over 6 training samples (the resume point and an epoch boundary inside), resumed from a
    renamed checkpoint folder (the step is read from the checkpoint, not its name); the training loss is logged."""
    steps = ("--max_steps", "4", "--per_device_train_batch_size", "2", "--checkpointing_steps", "2", "--cpu")
    log = []
    straight, _ = run_script("train_accelerate.py", food101, base_folder, tmp_path / "a", *steps,
                             "--logging_steps", "1", log=log)  # fmt: skip
    assert [f"step {n}: training loss" in log[0] for n in range(1, 5)] == [True] * 4
    checkpoint = tmp_path / "my checkpoint"
    (tmp_path / "a" / "step_2").rename(checkpoint)
    assert load_file(checkpoint / "model.safetensors").keys() == straight.keys()  # the adapter, not the backbone
    resumed, _ = run_script("train_accelerate.py", food101, base_folder, tmp_path / "b", *steps,
                            "--resume_from_checkpoint", str(checkpoint), log=log)  # fmt: skip
    assert "after 2 optimizer steps" in log[1]
    assert_same(resumed, straight)


@pytest.fixture(scope="module")
def single_process_runs():
    """The one-process runs of the next test, by script: plain and --fsdp compare against the same one."""
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_accelerate.py", "train.py", "train_accelerate.py --fsdp"])
def test_two_cpu_processes_match_one(script, food101, base_folder, tmp_path, single_process_runs):
    """2 processes x 2 samples end like 1 process x 4 samples, with the same eval loss (no world-size scaling);
    with --fsdp the two processes hold the backbone sharded (FSDP2), the one process holds it plain."""
    script, *sharded = script.split()
    if script == "train.py":
        extra = ("--optim", "sgd", "--use_cpu", "--report_to", "none", "--save_strategy", "no")
        single_only, double_only = (), ("--ddp_backend", "gloo")
        launcher, env = TORCHRUN, {}
    else:
        extra, single_only, double_only = ("--optimizer", "sgd"), ("--cpu",), ()
        launcher, env = (*ACCELERATE, "--main_process_port", free_port()), {"ACCELERATE_USE_CPU": "true"}
    args = (*ONE_STEP_OVER_FOUR, *extra)
    if script not in single_process_runs:
        single_process_runs[script] = run_script(script, food101, base_folder, tmp_path / "one", *args,
                                                 *single_only, "--per_device_train_batch_size", "4")  # fmt: skip
    single, single_metrics = single_process_runs[script]
    double, double_metrics = run_script(script, food101, base_folder, tmp_path / "two", *args, *double_only,
                                        *sharded, "--per_device_train_batch_size", "2", launcher=launcher,
                                        env=env)  # fmt: skip
    assert_same(double, single)
    loss = "eval_loss" if script == "train.py" else "loss"
    assert double_metrics["eval"][loss] == pytest.approx(single_metrics["eval"][loss], rel=1e-5)


@pytest.mark.slow
def test_simulated_missing_modalities_train_aware_and_unaware_adapters(food101, base_folder, tmp_path):
    """--missing_rate removes a modality from a seeded share of the rows: a missing-aware adapter trains on the
    masks, an unaware one on a blank image or an empty text in their place (the baseline)."""
    common = ("--max_steps", "2", "--per_device_train_batch_size", "2", "--cpu", "--missing_rate", "0.5")
    started = [start_script("train_accelerate.py", food101, base_folder, tmp_path / "aware", *common,
                            "--missing_modalities", "True"),
               start_script("train_accelerate.py", food101, base_folder, tmp_path / "unaware", *common)]  # fmt: skip
    (aware, metrics), (unaware, _) = [finish_script(run) for run in started]
    # The prompts of the missing types start at zero: only training on samples that lack a modality moves them.
    assert aware["base_model.mitp_adapters.missing_prompts"].abs().amax() > 1e-4
    assert "base_model.mitp_adapters.missing_prompts" not in unaware
    assert set(metrics["eval"]) >= {"accuracy", "loss"}  # evaluated on rows that lack a modality too
