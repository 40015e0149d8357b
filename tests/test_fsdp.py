"""FSDP2 on two CPU processes (gloo): the backbone sharded, MITP trained as in one unsharded process."""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import make_inputs, tiny_clip
from peft import PeftModel
from safetensors.torch import load_file

HERE = os.path.dirname(__file__)


def run(out_dir, *launcher, plain=False):
    command = [*launcher, os.path.join(HERE, "fsdp_run.py"), str(out_dir), *(["--plain"] if plain else [])]
    environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=HERE)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out_dir / "run.json").read_text())


@pytest.mark.slow
def test_two_sharded_processes_train_as_one_plain_one(tmp_path):
    plain = run(tmp_path / "plain", sys.executable, plain=True)
    sharded = run(tmp_path / "sharded", sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node", "2")  # fmt: skip
    assert sharded["world"] == 2
    assert "warm_start_head runs the towers outside the model's forward" in sharded["refused"]
    assert sharded["losses"] == pytest.approx(plain["losses"], rel=1e-5)
    assert plain["losses"][0] != pytest.approx(plain["losses"][-1], rel=1e-2)  # it trained
    assert sharded["backbone_unchanged"] and plain["backbone_unchanged"]

    # The checkpoint holds the adapter alone, gathered whole, and loads bit for bit into an unsharded model.
    saved = load_file(tmp_path / "sharded" / "adapter" / "adapter_model.safetensors")
    expected = load_file(tmp_path / "plain" / "adapter" / "adapter_model.safetensors")
    assert set(saved) == set(expected) and all(key.startswith("base_model.mitp_adapters.") for key in saved)
    for key in saved:
        torch.testing.assert_close(saved[key], expected[key], rtol=1e-5, atol=1e-6)
    again = PeftModel.from_pretrained(tiny_clip(), tmp_path / "sharded" / "adapter")
    loaded = {k: v for k, v in again.state_dict().items() if ".mitp_adapters." in k}
    assert all(torch.equal(loaded[k.replace("mitp_adapters.", "mitp_adapters.default.")], v) for k, v in saved.items())
    assert again(**make_inputs()).logits.shape == (3, 3)


def test_the_accelerate_configuration_the_readme_shows_loads():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(os.path.join(HERE, "..", "examples", "accelerate_fsdp.yaml"))
    assert (config.distributed_type.value, config.num_processes, str(config.mixed_precision)) == (
        "MULTI_GPU",
        4,
        "bf16",
    )
