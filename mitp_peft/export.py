"""ONNX export: the backbone with the active MITP adapter as one graph, to serve with onnxruntime without PyTorch.

peft's answer to exporting an adapter is "merge it, then export the backbone", which a prompt method cannot do: its
prompts are computed per input. MITP's forward with one adapter and complete pairs holds no host sync and no
data-dependent branch, so `torch.onnx.export` (the dynamo exporter) writes it whole: embeddings, extraction layers,
interaction layers with the memory hub, pooling and head. Needs the optional extra `pip install mitp-peft[onnx]`
(onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from peft import PeftModel
from PIL import Image
from torch import nn
from transformers import AutoProcessor

from .tuner.model import MITPModel, tuner_of

MODEL_FILE = "model.onnx"
LABELS_FILE = "mitp_onnx.json"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


class _ActiveAdapter(nn.Module):
    """The active adapter's forward from model inputs (positional, in `names`' order) to logits."""

    def __init__(self, tuner: MITPModel, names: list[str]) -> None:
        super().__init__()
        self.tuner = tuner
        self.adapter = tuner.mitp_adapters[tuner.active_adapter_name]
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.names, tensors, strict=True))
        return self.adapter(self.tuner.towers, self.adapter.batch(self.tuner.towers, inputs))[0]


def export_onnx(
    model: PeftModel | MITPModel,
    folder: str | Path,
    processor: Optional[Any] = None,
    example_inputs: Optional[dict[str, torch.Tensor]] = None,
    opset_version: int = 18,
) -> Path:
    """Write the backbone with the active adapter as one ONNX graph, `folder/model.onnx`, with its processor and
    `folder/mitp_onnx.json` (the graph's inputs, the label names, the problem type, the longest text that fits next to
    the prompts): everything `examples/onnx_predict.py` needs to classify images and texts with onnxruntime alone.

    Batch size and text length are dynamic. The graph takes complete pairs: an adapter created with
    `missing_modalities=True` exports its complete-pair path (pairs that lack a modality need PyTorch). `processor`
    defaults to the base model's (`AutoProcessor` of `base_model_name_or_path`); `example_inputs`, a batch of model
    inputs to trace with, default to two pairs it makes. Returns the graph's path.
    """
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as error:
        raise ImportError("ONNX export needs the optional extra: pip install 'mitp-peft[onnx]'.") from error
    tuner = tuner_of(model)
    name = tuner.active_adapter_name
    config = tuner.peft_config[name]
    if processor is None and config.base_model_name_or_path:
        processor = AutoProcessor.from_pretrained(config.base_model_name_or_path)
    if processor is None and example_inputs is None:
        raise ValueError("The adapter records no base model to take a processor from; pass processor=...")
    room = tuner.max_text_length
    read = set(tuner.towers.text.input_names) | set(tuner.towers.vision.input_names)
    given = example_inputs if example_inputs is not None else _example_inputs(processor, room)
    example = {key: value for key, value in given.items() if key in read and torch.is_tensor(value)}
    names = list(example)
    batch = torch.export.Dim("batch", min=1)
    text = torch.export.Dim("text", min=2, max=room) if room is not None else torch.export.Dim("text", min=2)
    shapes = tuple({0: batch, 1: text} if key in TEXT_INPUTS else {0: batch} for key in names)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    was_training = tuner.model.training
    tuner.model.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(
                _ActiveAdapter(tuner, names).eval(),
                tuple(example.values()),
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=(shapes,),
                opset_version=opset_version,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        tuner.model.train(was_training)
    if processor is not None:
        processor.save_pretrained(folder)
    record = {
        "inputs": names,
        "id2label": {str(i): label for i, label in (config.id2label or {}).items()}
        or {str(i): str(i) for i in range(config.num_labels)},
        "problem_type": config.problem_type,
        "max_text_length": room,
        "padding": "max_length" if tuner.towers.text.zero_shot_padding == "max_length" else True,
        "adapter": name,
        "base_model_name_or_path": config.base_model_name_or_path,
        "complete_pairs_only": True,
    }
    (folder / LABELS_FILE).write_text(json.dumps(record, indent=2))
    return path


def _example_inputs(processor: Any, room: Optional[int]) -> dict[str, torch.Tensor]:
    """Two pairs as the processor makes them, texts of two lengths."""
    size = getattr(processor.image_processor, "size", None) or {}
    side = size.get("height") or size.get("shortest_edge") or 224
    images = [Image.new("RGB", (side, side), color) for color in ("white", "gray")]
    texts = ["a photo", "a photo of something rather long"]
    return processor(text=texts, images=images, padding=True, truncation=True, max_length=room, return_tensors="pt")
