"""Build the demo's pretrained dual encoder offline: the real MiniLM, locked, and a small ViT trained LiT-style.

No pretrained CLIP ships in any package these machines can install, and prompts steer *pretrained* attention, so
the demo makes its own pretrained backbone: a `VisionTextDualEncoderModel` whose text tower is all-MiniLM-L6-v2
(locked, as in LiT) and whose vision tower is a 4-layer ViT trained from scratch to match captions of Fashion-MNIST
("a photo of a sneaker."). The downstream task uses other images (animal silhouettes), which this build never sees.
The result is saved with its processor and reused while its settings are unchanged.

    PYTHONPATH=benchmarks python -m mitp_bench.backbone [--preset demo|large] [--output_dir DIR]
"""

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoTokenizer,
    BertModel,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
    ViTConfig,
    ViTImageProcessorPil,
    ViTModel,
)

from mitp_bench.schedules import fit_adamw
from mitp_bench.sources import FASHION_CLASSES, IMAGE_SIZE, ROOT, load_fashion_mnist, minilm_path, to_pixels

TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a black and white photo of a {}.",
    "a small photo of a {}.",
    "a {}.",
)
IMAGE_MEAN = IMAGE_STD = [0.5, 0.5, 0.5]
BUILD_FILE = "demo_build.json"


@dataclass
class BuildSettings:
    """The build's recipe: a saved build is reused only while these are unchanged."""

    steps: int = 500
    batch_size: int = 256
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    seed: int = 0
    hidden_size: int = 192
    num_hidden_layers: int = 4
    patch_size: int = 7
    projection_dim: int = 256
    processor_resizes: bool = True
    """The saved processor resizes any image to the ViT's 28 px (builds before it did not)."""


# The demo's backbone, and a second one built differently and stronger for the accuracy benchmark: a deeper ViT (6
# layers instead of 4), pre-trained twice as many steps. Each is built once and cached under .cache/.
PRESETS = {
    "demo": BuildSettings(),
    "large": BuildSettings(steps=1000, num_hidden_layers=6),
}
DEFAULT_DIR = ROOT / ".cache" / "demo-backbone"


def preset_dir(preset: str) -> Path:
    """Where a preset's build is cached."""
    return DEFAULT_DIR if preset == "demo" else DEFAULT_DIR.with_name(f"demo-backbone-{preset}")


def pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) grey images as the saved processor's pixel_values (N, 3, 28, 28)."""
    return to_pixels(images, IMAGE_SIZE, IMAGE_MEAN, IMAGE_STD)


def new_backbone(settings: BuildSettings) -> tuple[VisionTextDualEncoderModel, VisionTextDualEncoderProcessor]:
    """MiniLM (pretrained) and a randomly initialised ViT for 28x28 images, joined by new projections."""
    size = IMAGE_SIZE
    vision = ViTModel(
        ViTConfig(
            image_size=size,
            patch_size=settings.patch_size,
            hidden_size=settings.hidden_size,
            num_hidden_layers=settings.num_hidden_layers,
            num_attention_heads=settings.hidden_size // 64,
            intermediate_size=4 * settings.hidden_size,
        )
    )
    text = BertModel.from_pretrained(minilm_path())
    model = VisionTextDualEncoderModel(vision_model=vision, text_model=text)
    # The wrapper's default projections are 512 wide; a 192-wide ViT does not need that many.
    model.config.projection_dim = settings.projection_dim
    model.visual_projection = torch.nn.Linear(settings.hidden_size, settings.projection_dim, bias=False)
    model.text_projection = torch.nn.Linear(text.config.hidden_size, settings.projection_dim, bias=False)
    image_processor = ViTImageProcessorPil(
        do_resize=True, size={"height": size, "width": size}, resample=2, image_mean=IMAGE_MEAN, image_std=IMAGE_STD
    )
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    return model, VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)


@torch.no_grad()
def caption_features(model, processor, classes: tuple[str, ...]) -> torch.Tensor:
    """The locked text tower's pooled features of every (template, class) caption: (templates, classes, width)."""
    captions = [template.format(name) for template in TEMPLATES for name in classes]
    tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")
    pooled = model.text_model(**tokens).pooler_output
    return pooled.view(len(TEMPLATES), len(classes), -1)


@torch.no_grad()
def zero_shot_accuracy(model, processor, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> float:
    """Accuracy of the nearest class caption (averaged over templates), as CLIP reports zero-shot accuracy."""
    model.eval()
    texts = F.normalize(model.text_projection(caption_features(model, processor, classes)), dim=-1)
    classifier = F.normalize(texts.mean(0), dim=-1)
    correct = 0
    for start in range(0, len(images), 1000):
        batch = pixels(images[start : start + 1000])
        embeds = F.normalize(model.get_image_features(pixel_values=batch).pooler_output, dim=-1)
        correct += (embeds @ classifier.T).argmax(-1).eq(torch.from_numpy(labels[start : start + 1000])).sum().item()
    return correct / len(images)


def pretrain(model, processor, settings: BuildSettings, images: np.ndarray, labels: np.ndarray) -> None:
    """LiT: the text tower is locked; the ViT, both projections and the temperature learn to match captions."""
    model.text_model.requires_grad_(False)
    captions = caption_features(model, processor, FASHION_CLASSES)
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(settings.seed)
    epochs = math.ceil(settings.steps * settings.batch_size / len(images))
    order = torch.cat([torch.randperm(len(images), generator=generator) for _ in range(epochs)])
    size = settings.batch_size
    batches = (order[step * size : (step + 1) * size].numpy() for step in range(settings.steps))
    model.train()

    def loss_of(batch: np.ndarray) -> torch.Tensor:
        pooled = model.get_image_features(pixel_values=pixels(images[batch])).pooler_output
        return caption_loss(model, captions, pooled, torch.from_numpy(labels[batch]), generator)

    fit_adamw(trainable, batches, loss_of, settings.learning_rate, settings.steps, settings.warmup_steps, "cosine",
        weight_decay=0.05, description="pre-training the ViT (LiT)")  # fmt: skip


def caption_loss(
    model, captions: torch.Tensor, image_features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Each image against the captions of all ten classes, each in a random template: the cross-entropy of its own
    class (the image-to-text half of CLIP's loss, without in-batch duplicates of a class counting as negatives)."""
    classes = torch.arange(captions.shape[1])
    template = torch.randint(len(TEMPLATES), (len(classes),), generator=generator)
    texts = F.normalize(model.text_projection(captions[template, classes]), dim=-1)
    embeds = F.normalize(image_features, dim=-1)
    return F.cross_entropy(model.logit_scale.exp() * embeds @ texts.T, labels)


def cached_build(
    output_dir: Path, settings: Any, what: str, build: Callable[[], tuple[Any, Any, dict]], report_name: str
) -> dict:
    """The report (`report_name` in `output_dir`) of the build saved there with the same settings, or else
    `build()`'s (model, processor, report), saved there with the settings and the zero-shot accuracy it reports."""
    report_file = Path(output_dir) / report_name
    if report_file.is_file():
        report = json.loads(report_file.read_text())
        if report["settings"] == asdict(settings):
            print(f"Reusing the {what} in {output_dir} (built with the same settings).")
            return report
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    model, processor, measured = build()
    seconds = time.perf_counter() - started
    report = {"settings": asdict(settings), **measured, "build_seconds": round(seconds, 1)}
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"Built the {what} in {seconds:.0f} s; zero-shot accuracy on the 10,000 held-out Fashion-MNIST test images: "
        f"{report['zero_shot_fashion_mnist_test']:.3f}. Saved to {output_dir}."
    )
    return report


def build_backbone(output_dir: Path = DEFAULT_DIR, settings: Optional[BuildSettings] = None) -> dict:
    """Build (or reuse, when `output_dir` holds a build with the same settings) the backbone; return its report."""
    settings = settings or BuildSettings()

    def build() -> tuple[Any, Any, dict]:
        model, processor = new_backbone(settings)
        images, labels = load_fashion_mnist("train")
        pretrain(model, processor, settings, images, labels)
        test_images, test_labels = load_fashion_mnist("test")
        accuracy = zero_shot_accuracy(model, processor, test_images, test_labels, FASHION_CLASSES)
        return model, processor, {"zero_shot_fashion_mnist_test": accuracy}

    return cached_build(output_dir, settings, "demo backbone", build, BUILD_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--output_dir", type=Path, help="default: .cache/demo-backbone[-<preset>]")
    args = parser.parse_args()
    build_backbone(args.output_dir or preset_dir(args.preset), PRESETS[args.preset])


if __name__ == "__main__":
    main()
