"""transformers.Trainer: exact eval loss, gradient accumulation and DDP give the same adapter as one big batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import PairDataset, tiny_clip
from peft import get_peft_model
from safetensors.torch import load_file
from trainer_run import run

from mitp_peft import MITPConfig

HERE = os.path.dirname(__file__)


def adapter(out_dir):
    return load_file(os.path.join(out_dir, "adapter.safetensors"))


def assert_same_adapter(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("one_batch"))
    torch.manual_seed(0)
    metrics = run(out, per_device_batch=4, accumulation=1)
    return out, metrics


def test_eval_loss_is_the_mean_cross_entropy(one_batch):
    """Trainer passes num_items_in_batch in evaluation too; the reported loss must be the plain mean over the set."""
    out, metrics = one_batch
    # Recompute with the trained adapter, outside Trainer.
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    model.load_state_dict(adapter(out), strict=False)
    data = PairDataset(8, seed=9)
    batch = {k: torch.stack([row[k] for row in data]) for k in data[0]}
    labels = batch.pop("labels")
    with torch.no_grad():
        expected = F.cross_entropy(model(**batch).logits, labels).item()
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_gradient_accumulation_equals_one_batch(one_batch, tmp_path):
    torch.manual_seed(0)
    run(str(tmp_path), per_device_batch=2, accumulation=2)
    assert_same_adapter(adapter(str(tmp_path)), adapter(one_batch[0]))


@pytest.mark.slow
def test_two_process_ddp_equals_one_batch(one_batch, tmp_path):
    """2 CPU processes (gloo) x 2 samples: same adapter as 1 process x 4, and the eval loss is not scaled by 2."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, os.path.join(HERE, "trainer_run.py"), str(tmp_path), "2", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["eval_loss"] == pytest.approx(one_batch[1]["eval_loss"], rel=1e-5)
    assert_same_adapter(adapter(str(tmp_path)), adapter(one_batch[0]))
