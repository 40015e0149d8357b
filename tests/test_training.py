"""examples/train.py end to end on a tiny backbone and a UPMC-Food101 folder: train, evaluate, save, reload."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from huggingface_hub import ModelCard
from transformers import AutoProcessor

import mitp_peft
from mitp_peft.data import MITPCollator, load_food101
from mitp_peft.metrics import accuracy


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
    assert accuracy(out.logits.numpy(), labels.numpy())["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert out.loss.item() == pytest.approx(metrics["eval_loss"], rel=1e-5)
