"""The package as users outside a checkout get it: a wheel, installed (not editable) in a fresh virtual environment."""

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest
from helpers import ROOT

# Runs in the fresh environment, from a folder outside the checkout: the quick start on a tiny CLIP, the Trainer
# metrics, save and reload, and the card.
USER_SCRIPT = textwrap.dedent(
    """
    import json, pathlib, sys, tempfile
    import numpy as np, torch
    from peft import PeftModel, get_peft_model
    from transformers import CLIPConfig, CLIPModel

    import mitp_peft
    from mitp_peft import MITPConfig
    from mitp_peft.metrics import compute_metrics

    def tiny():
        torch.manual_seed(0)
        text = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=24, bos_token_id=98, eos_token_id=99, pad_token_id=0)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                      patch_size=8)
        return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()

    config = MITPConfig(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, num_interaction_layers=2)
    model = get_peft_model(tiny(), config)
    ids = torch.tensor([[98, 5, 6, 99], [98, 7, 99, 0], [98, 8, 9, 99]])
    batch = dict(input_ids=ids, attention_mask=(ids != 0).long(), pixel_values=torch.randn(3, 3, 32, 32))
    out = model(**batch, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    folder = pathlib.Path(tempfile.mkdtemp())
    model.save_pretrained(folder)
    again = PeftModel.from_pretrained(tiny(), folder)
    metrics = compute_metrics("single_label_classification")(
        type("Prediction", (), {"predictions": np.eye(3), "label_ids": np.array([0, 1, 1])})()
    )
    print(json.dumps({
        "package": mitp_peft.__file__,
        "same_logits": bool(torch.equal(again(**batch).logits, model(**batch).logits)),
        "accuracy": metrics["accuracy"],
        "card": "## MITP settings" in (folder / "README.md").read_text(),
        "files": sorted(p.name for p in folder.iterdir()),
    }))
    """
)


@pytest.mark.slow
def test_the_built_wheel_works_installed_in_a_fresh_environment(tmp_path):
    import json

    # Built from a copy of the source files alone: a build/ folder left in the checkout would slip stale files in.
    source = tmp_path / "source"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    built = subprocess.run([*build, str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("mitp_peft-*.whl")

    # A fresh environment that borrows only the third-party packages of this one (torch and friends): a .pth line
    # adds their folder, without running the .pth files there (the editable install of the checkout is one).
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(site, "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "user.py").write_text(USER_SCRIPT)
    ran = subprocess.run(
        [str(python), "user.py"], cwd=outside, capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["package"].startswith(site), report["package"]  # the wheel's copy, not the checkout
    assert report["same_logits"] and report["accuracy"] == pytest.approx(2 / 3) and report["card"]
    assert report["files"] == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
