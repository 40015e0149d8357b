"""What the tests share: tiny CLIP backbones built from configs (no downloads), inputs and a processor for them,
small image and pairs files, and the repository's scripts imported as modules. Fixtures live in the conftest.py
files, which build them from these."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402

import mitp_peft  # noqa: E402, F401  (registers MITP)

VOCAB = 100
BOS, EOS, PAD = VOCAB - 2, VOCAB - 1, 0
MAX_POSITIONS = 24
TEXT_LAYERS, VISION_LAYERS = 5, 6
TEXT_WIDTH, VISION_WIDTH = 32, 48


def tiny_clip_config(**text_overrides) -> CLIPConfig:
    text = dict(
        vocab_size=VOCAB,
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    text.update(text_overrides)
    vision = dict(
        hidden_size=VISION_WIDTH,
        intermediate_size=64,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def tiny_clip(seed: int = 0, **text_overrides) -> CLIPModel:
    torch.manual_seed(seed)
    return CLIPModel(tiny_clip_config(**text_overrides)).eval()


def make_inputs(batch: int = 3, lengths=None, seed: int = 1, pad_to: int | None = None) -> dict:
    """Texts of the given real lengths (BOS ... EOS), right-padded with PAD, and random images."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [7 - (i % 3) for i in range(batch)]
    width = pad_to or max(lengths)
    ids = torch.full((batch, width), PAD)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, BOS, (n,), generator=g)
        ids[row, 0], ids[row, n - 1] = BOS, EOS
        mask[row, :n] = 1
    pixels = torch.randn(batch, 3, 32, 32, generator=g)
    return dict(pixel_values=pixels, input_ids=ids, attention_mask=mask)


def adapter_keys(prefix: str = "base_model.", adapter: str = "", head: str = "mlp") -> set[str]:
    """The names of an MITP adapter's tensors (default settings): in the model (with its adapter name) or in a saved
    file (without)."""
    root = f"{prefix}mitp_adapters{f'.{adapter}' if adapter else ''}"
    hub = [
        f"{root}.hub.translate_{direction}.{index}.{kind}"
        for direction in ("text_to_vision", "vision_to_text")
        for index in (0, 2)
        for kind in ("weight", "bias")
    ]
    layers = [".0", ".2"] if head == "mlp" else [""]
    classifier = [f"{root}.head.classifier{layer}.{kind}" for layer in layers for kind in ("weight", "bias")]
    return {f"{root}.prompt", *hub, *classifier}


def adapter_module(model, name: str = "default"):
    """The MITPAdapter of a PeftModel."""
    return model.base_model.mitp_adapters[name]


def script_module(relative_path: str):
    """A script of the repository (e.g. benchmarks/budget.py) imported as a module from its file."""
    import importlib.util
    import sys

    path = ROOT / relative_path
    name = f"script_{path.stem}"
    if name not in sys.modules:  # dataclasses look their module up there
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


DEVICE = os.environ.get("MITP_TEST_DEVICE", "cpu")
"""Where the device tests run (test_robustness, test_compile): the CPU here and in CI; `cuda` in the GPU check
(benchmarks/gpu_check.py)."""


def on(device: str, batch: dict) -> dict:
    """A batch of model inputs on a device."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class PairDataset(torch.utils.data.Dataset):
    """(image, text, label) samples as a Trainer sees them: fixed-length texts so the default collator stacks them."""

    def __init__(self, size: int, num_labels: int = 3, seed: int = 5) -> None:
        batch = make_inputs(batch=size, lengths=[4 + i % 4 for i in range(size)], seed=seed, pad_to=8)
        self.rows = [{k: v[i] for k, v in batch.items()} for i in range(size)]
        for i, row in enumerate(self.rows):
            row["labels"] = torch.tensor(i % num_labels)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def tiny_clip_processor(folder):
    """A CLIPProcessor for the tiny CLIP, built offline: a character-level BPE vocabulary (ids below BOS) and
    32-pixel images."""
    import json
    import string

    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    vocab = {}
    for char in string.ascii_lowercase:
        vocab[char] = len(vocab)
        vocab[f"{char}</w>"] = len(vocab)
    vocab.update({"<|startoftext|>": BOS, "<|endoftext|>": EOS})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=MAX_POSITIONS,
        pad_token="<|endoftext|>",
    )
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)


def picture(path, seed: int = 0) -> None:
    """A small random PNG image at `path`."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((12, 16, 3)) * 255).astype("uint8")).save(path, format="PNG")


def pairs_file(folder, name, rows, header="path,text,label"):
    """A pairs CSV in `folder` whose rows name the image a.png there (written too)."""
    picture(folder / "a.png")
    (folder / name).write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return folder / name
