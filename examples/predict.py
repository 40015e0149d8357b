"""Classify (image, text) pairs with an MITP adapter from the command line.

    python examples/predict.py user/clip-mitp-food101 --image dish.jpg --text "spaghetti carbonara" --top-k 3
    python examples/predict.py ./adapter --base /local/clip-vit-large-patch14 --image a.jpg b.jpg --text "..." "..."

Prints one line per image: the path, then label and probability pairs, best first.
"""

import argparse

from PIL import Image
from transformers import AutoProcessor

import mitp_peft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", help="adapter folder or hub repo id")
    parser.add_argument("--base", help="base model to load instead of the one the adapter names")
    parser.add_argument("--image", nargs="+", required=True, help="image files")
    parser.add_argument("--text", nargs="+", required=True, help="one text per image")
    parser.add_argument("--top-k", type=int, default=1, help="labels per image (single-label adapters)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold (multi-label adapters)")
    args = parser.parse_args()
    if len(args.image) != len(args.text):
        parser.error(f"give one --text per --image: got {len(args.image)} images and {len(args.text)} texts")

    try:
        model = mitp_peft.from_pretrained(args.adapter, base_model_name_or_path=args.base)
    except OSError as error:  # the base model is not reachable: this script's flag for it is --base
        parser.error(f"{error}".replace("pass base_model_name_or_path=", "pass --base ").replace(
            "given as base_model_name_or_path", "given as --base"))  # fmt: skip
    # Without --base, predict takes the processor of the base model the adapter names.
    processor = AutoProcessor.from_pretrained(args.base) if args.base else None
    images = [Image.open(path).convert("RGB") for path in args.image]
    results = mitp_peft.predict(model, images, args.text, processor, top_k=args.top_k, threshold=args.threshold)
    for path, result in zip(args.image, results, strict=True):
        pairs = zip(result["labels"], result["scores"], strict=True)
        print(f"{path}: " + ", ".join(f"{label} {score:.3f}" for label, score in pairs))


if __name__ == "__main__":
    main()
