"""The examples run as the README shows them."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, picture, tiny_clip
from peft import get_peft_model

from mitp_peft import MITPConfig


def run_example(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )


@pytest.mark.slow
def test_quickstart_runs_offline():
    done = run_example("quickstart.py")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "identical logits = True" in done.stdout
    assert "logits (4, 3)" in done.stdout


def test_quickstart_with_a_base_model_asks_for_an_image():
    done = run_example("quickstart.py", "--base", "openai/clip-vit-base-patch16")
    assert done.returncode == 2
    assert "--base needs --image (and --text)" in done.stderr


def test_predict_names_its_own_flag_when_the_base_model_is_unreachable(tmp_path):
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=2))
    model.peft_config["default"].base_model_name_or_path = "org/not-on-this-machine"
    model.save_pretrained(tmp_path / "adapter")
    picture(tmp_path / "a.png")
    done = run_example("predict.py", str(tmp_path / "adapter"), "--image", str(tmp_path / "a.png"), "--text", "a")
    assert done.returncode == 2
    assert "Could not load 'org/not-on-this-machine'" in done.stderr
    assert "pass --base '/path/to/the/base/model'" in done.stderr and "base_model_name_or_path=" not in done.stderr
    given = run_example("predict.py", str(tmp_path / "adapter"), "--base", str(tmp_path / "nope"), "--image",
                        str(tmp_path / "a.png"), "--text", "a")  # fmt: skip
    assert given.returncode == 2
    assert f"Could not load the base model '{tmp_path / 'nope'}' given as --base" in given.stderr
    assert "of the adapter" not in given.stderr


def test_simulated_missingness_without_a_missing_aware_adapter_is_said_in_the_log(tmp_path, caplog):
    from helpers import script_module, tiny_clip_processor

    from mitp_peft.arguments import DataArguments, Splits

    make_collator = script_module("examples/common.py").make_collator
    splits = Splits(train=None, evaluation=None, label_names=["a", "b"], multi_label=False)
    processor = tiny_clip_processor(tmp_path)
    unaware = get_peft_model(tiny_clip(), MITPConfig(num_labels=2))
    data = DataArguments(dataset="food101", missing_rate=0.5)
    with caplog.at_level("WARNING"):
        collator = make_collator(unaware, processor, splits, data)
    assert collator.missing == "fill"
    assert "--missing_rate 0.5 (--eval_missing_rate 0.5) without --missing_modalities" in caplog.text
    assert "Add --missing_modalities" in caplog.text
    caplog.clear()
    aware = get_peft_model(tiny_clip(), MITPConfig(num_labels=2, missing_modalities=True))
    with caplog.at_level("WARNING"):
        assert make_collator(aware, processor, splits, data).missing == "mask"
    assert "without --missing_modalities" not in caplog.text
