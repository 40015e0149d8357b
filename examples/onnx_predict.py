"""Classify (image, text) pairs with an MITP adapter exported to ONNX: onnxruntime, numpy and a processor, no torch.

    python -c "import mitp_peft; mitp_peft.export_onnx(mitp_peft.from_pretrained('ADAPTER'), 'exported')"
    python examples/onnx_predict.py exported --image dish.jpg --text "spaghetti carbonara" --top-k 3

The folder `mitp_peft.export_onnx` writes holds the graph (model.onnx), the processor and mitp_onnx.json (the graph's
inputs, label names, problem type and the longest text that fits next to the prompts). `OnnxClassifier` is the
whole of serving: copy it into a service that has onnxruntime and transformers (without torch) installed.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image
from transformers import AutoProcessor


class OnnxClassifier:
    """Label names and scores for (image, text) pairs from an exported MITP adapter."""

    def __init__(self, folder: str) -> None:
        folder = Path(folder)
        self.record = json.loads((folder / "mitp_onnx.json").read_text())
        self.processor = AutoProcessor.from_pretrained(folder)
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"))

    def __call__(self, images: list, texts: list[str], top_k: int = 1, threshold: float = 0.5) -> list[dict]:
        """Per pair, `{"labels": [...], "scores": [...]}`, best first: the top k by softmax probability, or (a
        multi-label adapter) every label whose sigmoid probability reaches the threshold."""
        record = self.record
        batch = self.processor(text=list(texts), images=list(images), padding=record["padding"], truncation=True,
                               max_length=record["max_text_length"], return_tensors="np")  # fmt: skip
        logits = self.session.run(["logits"], {name: batch[name] for name in record["inputs"]})[0]
        names = record["id2label"]
        if record["problem_type"] == "multi_label_classification":
            probabilities = 1 / (1 + np.exp(-logits))
            chosen = [np.flatnonzero(row >= threshold) for row in probabilities]
            chosen = [indices[np.argsort(-row[indices])] for indices, row in zip(chosen, probabilities, strict=True)]
        else:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
            chosen = [np.argsort(-row)[:top_k] for row in probabilities]
        return [
            {"labels": [names[str(i)] for i in indices], "scores": [float(row[i]) for i in indices]}
            for indices, row in zip(chosen, probabilities, strict=True)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder mitp_peft.export_onnx wrote")
    parser.add_argument("--image", nargs="+", required=True, help="image files")
    parser.add_argument("--text", nargs="+", required=True, help="one text per image")
    parser.add_argument("--top-k", type=int, default=1, help="labels per image (single-label adapters)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold (multi-label adapters)")
    args = parser.parse_args()
    if len(args.image) != len(args.text):
        parser.error(f"give one --text per --image: got {len(args.image)} images and {len(args.text)} texts")
    images = [Image.open(path).convert("RGB") for path in args.image]
    results = OnnxClassifier(args.folder)(images, args.text, top_k=args.top_k, threshold=args.threshold)
    for path, result in zip(args.image, results, strict=True):
        pairs = zip(result["labels"], result["scores"], strict=True)
        print(f"{path}: " + ", ".join(f"{label} {score:.3f}" for label, score in pairs))


if __name__ == "__main__":
    main()
