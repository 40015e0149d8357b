"""MITP's parameter budget on standard backbones, built from their published sizes on the meta device (no weights).

    python benchmarks/budget.py [--num-labels 101] [--json budget.json]

Prints a Markdown table: default interaction layers, trainable parameters, share of the backbone, adapter size, and
the count with each other head (`head="linear"` is the paper's budget).
"""

from __future__ import annotations

import argparse
import json

import torch
from peft import get_peft_model
from transformers import (
    BertConfig,
    CLIPConfig,
    CLIPModel,
    Dinov2Config,
    SiglipConfig,
    SiglipModel,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    ViTConfig,
)

import mitp_peft  # noqa: F401  (registers MITP)
from mitp_peft import MITPConfig


def _clip(text_width: int, vision_width: int, vision_layers: int, patch: int, image: int = 224) -> CLIPModel:
    text = dict(
        hidden_size=text_width,
        intermediate_size=4 * text_width,
        num_hidden_layers=12,
        num_attention_heads=text_width // 64,
    )
    vision = dict(
        hidden_size=vision_width,
        intermediate_size=4 * vision_width,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_width // 64,
        patch_size=patch,
        image_size=image,
    )
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=text_width))


def _siglip(width: int, intermediate: int, layers: int, heads: int, patch: int, image: int) -> SiglipModel:
    shared = dict(
        hidden_size=width, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads
    )
    text = dict(shared, vocab_size=32000, max_position_embeddings=64, projection_size=width)
    text.update(pad_token_id=1, bos_token_id=None, eos_token_id=1)
    return SiglipModel(SiglipConfig(text_config=text, vision_config=dict(shared, patch_size=patch, image_size=image)))


def _vit_bert() -> VisionTextDualEncoderModel:
    config = VisionTextDualEncoderConfig.from_vision_text_configs(ViTConfig(), BertConfig(), projection_dim=512)
    return VisionTextDualEncoderModel(config)


def _dino_minilm() -> VisionTextDualEncoderModel:
    """The accuracy study's backbone (mitp_bench.dino): DINOv2-S/14 and all-MiniLM-L6-v2, projections 256 wide."""
    vision = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518)
    text = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=256)
    return VisionTextDualEncoderModel(config)


OTHER_HEADS = ("linear", "agreement", "per_modality")
BACKBONES = {
    "CLIP ViT-B/32": lambda: _clip(512, 768, 12, 32),
    "CLIP ViT-B/16": lambda: _clip(512, 768, 12, 16),
    "CLIP ViT-L/14": lambda: _clip(768, 1024, 24, 14),
    "CLIP ViT-L/14-336": lambda: _clip(768, 1024, 24, 14, image=336),
    "SigLIP base/16-224": lambda: _siglip(768, 3072, 12, 12, 16, 224),
    "SigLIP so400m/14-384": lambda: _siglip(1152, 4304, 27, 16, 14, 384),
    "ViT-B/16 + BERT-base (PMF)": _vit_bert,
    "DINOv2-S/14 + MiniLM-L6 (the study's)": _dino_minilm,
}


def budget_row(name: str, num_labels: int) -> dict:
    with torch.device("meta"):
        base = BACKBONES[name]()
    backbone = sum(p.numel() for p in base.parameters())
    model = get_peft_model(base, MITPConfig(num_labels=num_labels))
    config = model.peft_config["default"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    other_heads = {}
    for head in OTHER_HEADS:
        model.add_adapter(head, MITPConfig(num_labels=num_labels, head=head))
        other_heads[head] = model.base_model.mitp_adapters[head].num_parameters
    return {
        "backbone": name,
        "backbone_params": backbone,
        "text_layers": config.text_layers,
        "vision_layers": config.vision_layers,
        "trainable_params": trainable,
        "share_percent": 100 * trainable / backbone,
        "adapter_mb_fp32": trainable * 4 / 1e6,
        "other_heads": other_heads,
    }


def markdown(rows: list[dict], num_labels: int) -> str:
    lines = [
        f"| backbone | parameters | interaction layers (text / vision) | trainable ({num_labels} classes) "
        "| share | adapter (fp32) | head='linear' | head='agreement' | head='per_modality' |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        layers = f"{r['text_layers']} / {r['vision_layers']}"
        lines.append(
            f"| {r['backbone']} | {r['backbone_params'] / 1e6:.1f}M | {layers} | {r['trainable_params']:,} "
            f"| {r['share_percent']:.2f}% | {r['adapter_mb_fp32']:.1f} MB | "
            + " | ".join(f"{r['other_heads'][head]:,}" for head in OTHER_HEADS)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-labels", type=int, default=101)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = [budget_row(name, args.num_labels) for name in BACKBONES]
    print(markdown(rows, args.num_labels))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
