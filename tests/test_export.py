"""ONNX export: the backbone with the active adapter as one graph, run by onnxruntime, equal to PyTorch."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from families import build, family_inputs
from helpers import make_inputs, tiny_clip, tiny_clip_processor
from peft import get_peft_model

from mitp_peft import MITPConfig, export_onnx

ort = pytest.importorskip("onnxruntime")


def trained_like(model):
    torch.manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clip", "siglip", "vit+bert", "dinov2+bert"])
def test_onnxruntime_gives_pytorchs_logits_at_other_batch_sizes_and_text_lengths(name, tmp_path):
    model = trained_like(get_peft_model(build(name), MITPConfig(num_labels=3)))
    path = export_onnx(model, tmp_path, example_inputs=family_inputs(name, lengths=(6, 4)))
    record = json.loads((tmp_path / "mitp_onnx.json").read_text())
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == record["inputs"]
    for lengths in ((7, 5, 3), (9, 2, 4, 8, 6)):  # other batch sizes and text lengths than the traced ones
        inputs = family_inputs(name, lengths=lengths, seed=len(lengths))
        with torch.no_grad():
            expected = model(**inputs).logits.numpy()
        got = session.run(["logits"], {key: inputs[key].numpy() for key in record["inputs"]})[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
        assert np.abs(expected).max() > 1e-2  # logits that say something


@pytest.mark.slow
def test_a_missing_aware_adapter_exports_its_complete_pair_path(tmp_path):
    model = trained_like(get_peft_model(tiny_clip(), MITPConfig(num_labels=3, missing_modalities=True)))
    processor = tiny_clip_processor(tmp_path)
    path = export_onnx(model, tmp_path / "onnx", processor=processor)
    record = json.loads((tmp_path / "onnx" / "mitp_onnx.json").read_text())
    assert record["complete_pairs_only"] and record["inputs"] == ["input_ids", "attention_mask", "pixel_values"]
    inputs = make_inputs(batch=4, lengths=[7, 3, 5, 9])
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    got = ort.InferenceSession(str(path)).run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def torch_free_python(tmp_path):
    """A fresh environment that borrows this one's packages except PyTorch and what needs it: what a service that
    serves the exported graph installs (onnxruntime, transformers, numpy, pillow)."""
    import subprocess
    import sysconfig
    import venv

    site = Path(sysconfig.get_path("purelib"))
    borrowed = tmp_path / "borrowed"
    borrowed.mkdir()
    needs_torch = ("torch", "functorch", "torchgen", "peft", "accelerate", "mitp_peft", "__editable__", "nvidia")
    for entry in site.iterdir():
        if not entry.name.lower().startswith(needs_torch) and entry.suffix != ".pth":
            (borrowed / entry.name).symlink_to(entry)
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "borrowed.pth").write_text(f"{borrowed}\n")
    return python


@pytest.mark.slow
def test_the_exported_folder_classifies_images_and_texts_without_pytorch(tmp_path):
    import subprocess

    from helpers import ROOT
    from PIL import Image

    import mitp_peft

    id2label = {0: "soup", 1: "salad", 2: "cake"}
    model = trained_like(get_peft_model(tiny_clip(), MITPConfig(num_labels=3, id2label=id2label)))
    processor = tiny_clip_processor(tmp_path)
    export_onnx(model, tmp_path / "exported", processor=processor)
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
    texts = ["hot soup", "a green salad", "cake"]
    images = [Image.open(tmp_path / f"{index}.png").convert("RGB") for index in range(3)]
    expected = mitp_peft.predict(model, images, texts, processor=processor, top_k=2)

    python = torch_free_python(tmp_path)
    command = [str(python), str(ROOT / "examples" / "onnx_predict.py"), str(tmp_path / "exported"), "--top-k", "2",
               "--image", *(str(tmp_path / f"{index}.png") for index in range(3)), "--text", *texts]  # fmt: skip
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    assert subprocess.run([str(python), "-c", probe]).returncode == 0  # no PyTorch in that environment
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, result in zip(lines, expected, strict=True):
        answers = [answer.rsplit(" ", 1) for answer in line.split(": ", 1)[1].split(", ")]
        assert [label for label, _ in answers] == result["labels"]
        assert [float(score) for _, score in answers] == pytest.approx(result["scores"], abs=6e-4)  # printed to 3
