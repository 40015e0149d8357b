"""How much crosses between the towers at initialization, on the study's pretrained backbones.

For a fresh adapter (the default config, each kind of hub and what it reads, one seed each), the relative change
of the pooled text features when only the images of a batch change, and of the pooled image features when only the
texts change: ||f(x') - f(x)|| / ||f(x)|| per sample, reported as the batch's minimum and median. The tests assert a
lower bound of 5e-3 on tiny backbones of every family; this shows it on real weights, where the first hub let
through 1e-5.

    python benchmarks/interaction.py                      # the study's DINOv2 backbone (when it is built)
    python benchmarks/interaction.py --backbones demo,large  # the toy backbones of the superseded study
"""

from __future__ import annotations

import argparse
import statistics

import torch
from peft import get_peft_model
from transformers import AutoModel, AutoProcessor

from mitp_bench.backbone import preset_dir
from mitp_bench.dino import DEFAULT_DIR as DINO_DIR
from mitp_bench.experiment import load_data
from mitp_peft import MITPConfig
from mitp_peft.method.hub import HUB_ATTENTIONS, HUB_READS

PAIRS = 16


def relative_change(changed: torch.Tensor, reference: torch.Tensor) -> list[float]:
    return ((changed - reference).norm(dim=-1) / reference.norm(dim=-1)).tolist()


def either_or_pairs(folder: str) -> tuple[dict, dict]:
    """Two batches of PAIRS either-or test pairs, as model inputs of the backbone in `folder`."""
    split = load_data("either_or", AutoProcessor.from_pretrained(folder)).splits["test"]
    return split.batch(torch.arange(PAIRS)), split.batch(torch.arange(PAIRS, 2 * PAIRS))


@torch.no_grad()
def measure(
    folder: str, hub_attention: str, pairs: tuple[dict, dict], hub_reads: str = MITPConfig.hub_reads, seed: int = 0
) -> dict[str, list[float]]:
    torch.manual_seed(seed)
    config = MITPConfig(num_labels=2, hub_attention=hub_attention, hub_reads=hub_reads)
    model = get_peft_model(AutoModel.from_pretrained(folder), config)
    model.eval()
    first, second = pairs
    other_image = dict(first, pixel_values=second["pixel_values"])
    other_text = dict(second, pixel_values=first["pixel_values"])
    reference = model(**first)
    return {
        "text moved by the image": relative_change(model(**other_image).text_features, reference.text_features),
        "image moved by the text": relative_change(model(**other_text).image_features, reference.image_features),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="dino", help="dino, demo, large (comma-separated)")
    args = parser.parse_args()
    print(f"| backbone | hub | reads | direction | minimum over {PAIRS} pairs | median |")
    print("|---|---|---|---|---:|---:|")
    for preset in args.backbones.split(","):
        folder = DINO_DIR if preset == "dino" else preset_dir(preset)
        if not (folder / "config.json").exists():
            print(f"| {preset} | (not built: make backbone-{preset}) | | | | |")
            continue
        pairs = either_or_pairs(str(folder))
        for hub in HUB_ATTENTIONS:
            for reads in HUB_READS:
                for direction, changes in measure(str(folder), hub, pairs, reads).items():
                    low, middle = min(changes), statistics.median(changes)
                    print(f"| {preset} | {hub} | {reads} | {direction} | {low:.1e} | {middle:.1e} |")


if __name__ == "__main__":
    main()
