"""The harness tests' fixtures: the study's backbones, built small."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """The demo backbone after two pre-training steps (real MiniLM, briefly trained ViT): folder, settings, report."""
    from mitp_bench import backbone

    folder = tmp_path_factory.mktemp("backbone")
    settings = backbone.BuildSettings(steps=2, batch_size=8, warmup_steps=1)
    return folder, settings, backbone.build_backbone(folder, settings)


@pytest.fixture(scope="session")
def unfitted_dino_backbone(tmp_path_factory):
    """The study's backbone (pretrained DINOv2-S/14 and MiniLM) with its projections new, not fitted: its folder."""
    from mitp_bench import dino

    folder = tmp_path_factory.mktemp("dino")
    model, processor = dino.new_backbone(dino.DinoSettings())
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
