"""Tiny dual encoders of every supported family, built from configs, inputs that fit each, and an MITP model on any
backbone (`mitp`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Optional

import torch
from helpers import tiny_clip
from peft import PeftModel, get_peft_model
from transformers import (
    AltCLIPConfig,
    AltCLIPModel,
    BertConfig,
    ChineseCLIPConfig,
    ChineseCLIPModel,
    CLIPVisionConfig,
    DeiTConfig,
    Dinov2Config,
    Dinov2WithRegistersConfig,
    RobertaConfig,
    Siglip2Config,
    Siglip2Model,
    SiglipConfig,
    SiglipModel,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    ViTConfig,
)

from mitp_peft import MITPConfig

VOCAB = 100
TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=4)
TEXT.update(max_position_embeddings=40)
# SigLIP compares the text head's output with the image features directly: their widths must agree.
SIGLIP_TEXT = dict(TEXT, projection_size=48, bos_token_id=2, eos_token_id=VOCAB - 1, pad_token_id=1)
VISION = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4)
VISION.update(image_size=32, patch_size=8)
# DINOv2 sizes its MLP by mlp_ratio; its position table is interpolated to any image size (here 4 x 4 patches).
DINOV2 = dict(hidden_size=48, mlp_ratio=2, num_hidden_layers=6, num_attention_heads=4, image_size=32, patch_size=8)


class Family(NamedTuple):
    build: Callable[[], torch.nn.Module]
    pad_token_id: int
    pixel_inputs: Callable[[int, torch.Generator], dict]
    has_token_types: bool = False


def images(batch: int, g: torch.Generator) -> dict:
    return dict(pixel_values=torch.randn(batch, 3, 32, 32, generator=g))


def naflex_images(batch: int, g: torch.Generator) -> dict:
    """SigLIP 2: 16 patches of 8 x 8 x 3 values on a 4 x 4 grid; the second image uses only 12 of them."""
    mask = torch.ones(batch, 16, dtype=torch.long)
    mask[1:, 12:] = 0
    return dict(
        pixel_values=torch.randn(batch, 16, 3 * 8 * 8, generator=g),
        pixel_attention_mask=mask,
        spatial_shapes=torch.tensor([[4, 4]] * batch),
    )


def vtde(vision_config, text_config):
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision_config, text_config, projection_dim=16)
    return VisionTextDualEncoderModel(config)


FAMILIES: dict[str, Family] = {
    "clip": Family(tiny_clip, 0, images),
    "siglip": Family(lambda: SiglipModel(SiglipConfig(text_config=SIGLIP_TEXT, vision_config=VISION)), 1, images),
    "siglip2": Family(
        lambda: Siglip2Model(Siglip2Config(text_config=SIGLIP_TEXT, vision_config=dict(VISION, num_patches=16))),
        1,
        naflex_images,
    ),
    "chinese_clip": Family(
        lambda: ChineseCLIPModel(ChineseCLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)),
        0,
        images,
        has_token_types=True,
    ),
    "altclip": Family(
        lambda: AltCLIPModel(
            AltCLIPConfig(text_config=dict(TEXT, project_dim=24), vision_config=VISION, projection_dim=16)
        ),
        1,
        images,
        has_token_types=True,
    ),
    "vit+bert": Family(lambda: vtde(ViTConfig(**VISION), BertConfig(**TEXT)), 0, images, has_token_types=True),
    "deit+roberta": Family(lambda: vtde(DeiTConfig(**VISION), RobertaConfig(**TEXT)), 1, images, has_token_types=True),
    "clip-vision+bert": Family(
        lambda: vtde(CLIPVisionConfig(**VISION), BertConfig(**TEXT)), 0, images, has_token_types=True
    ),
    "dinov2+bert": Family(
        lambda: vtde(Dinov2Config(**DINOV2), BertConfig(**TEXT)),
        0,
        images,
        has_token_types=True,
    ),
    "dinov2-registers+bert": Family(
        lambda: vtde(
            Dinov2WithRegistersConfig(**DINOV2, num_register_tokens=2),
            BertConfig(**TEXT),
        ),
        0,
        images,
        has_token_types=True,
    ),
}


# BERT-likes and ViTs initialize weights with std `initializer_range` = 0.02, chosen for width 768 (a gain std *
# sqrt(width) of 0.55); at the tiny width of 32 that is a gain of 0.11, a tower whose attention barely touches its
# residual stream. Trained towers are not like that: all-MiniLM-L6-v2's attention and MLP weights have gains of 1.0 to
# 1.9. Tests about how much one token stream moves another build with this range (gain 1.1); CLIP and SigLIP scale
# their initialization with the width already and ignore it.
TRAINED_LIKE_INIT = 0.2


def build(name: str, seed: int = 0, initializer_range: Optional[float] = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    if initializer_range is None:
        return FAMILIES[name].build().eval()
    configs = (TEXT, VISION, DINOV2)
    saved = [dict(config) for config in configs]
    for config in configs:  # the builders read these module-level configs when called
        config["initializer_range"] = initializer_range
    try:
        return FAMILIES[name].build().eval()
    finally:
        for config, original in zip(configs, saved, strict=True):
            config.clear()
            config.update(original)


def family_inputs(name: str, lengths=(7, 5, 3), seed: int = 1) -> dict:
    """Texts of the given lengths (first token 3, last token VOCAB - 1 as an end token), right-padded."""
    family = FAMILIES[name]
    g = torch.Generator().manual_seed(seed)
    batch, width = len(lengths), max(lengths)
    ids = torch.full((batch, width), family.pad_token_id)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(4, VOCAB - 2, (n,), generator=g)
        ids[row, 0], ids[row, n - 1] = 3, VOCAB - 1
        mask[row, :n] = 1
    return dict(input_ids=ids, attention_mask=mask, **family.pixel_inputs(batch, g))


def mitp(backbone: torch.nn.Module | str, **settings) -> PeftModel:
    """An MITP model with `settings` (3 labels unless they say otherwise) on `backbone`: a model, or the name of a
    family here, built with seed 0."""
    model = build(backbone) if isinstance(backbone, str) else backbone
    return get_peft_model(model, MITPConfig(**{"num_labels": 3, **settings}))
