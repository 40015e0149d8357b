"""Prediction: label names and scores for (image, text) pairs, batched, with the backbone's processor."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoProcessor

from .collator import MITPCollator, text_is_absent


def predict(
    model: PeftModel,
    images: Union[Any, Sequence[Any], None] = None,
    texts: Union[str, Sequence[Optional[str]], None] = None,
    processor: Optional[Any] = None,
    top_k: int = 1,
    threshold: float = 0.5,
    batch_size: int = 32,
    adapters: Optional[Sequence[str]] = None,
) -> Union[list[dict[str, list]], dict[str, list[dict[str, list]]]]:
    """Classify each (image, text) pair with the active MITP adapter, or with each of `adapters` in one pass
    (`{adapter name: results}`; see `MITPModel.fan_out`: the layers below the interaction layers run once; texts are
    truncated to what fits next to the longest prompts among them).

    Single-label adapters give the `top_k` labels by softmax probability; multi-label adapters give every label
    whose sigmoid probability reaches `threshold`. Each result is `{"labels": [names], "scores": [probabilities]}`,
    best first (at most `top_k` of them: the adapter's labels may be fewer). `processor` defaults to the base model's
    (`AutoProcessor` of `base_model_name_or_path`); the batches are made as `MITPCollator` makes them for training.
    `images` are PIL images, arrays or tensors (one (3, height, width) image each, or a (N, 3, height, width) batch),
    raw as a camera or a file gives them: integers in 0..255, or floats in 0..255 or in [0, 1] (floats in [0, 1] are
    scaled to 0..255 first, with a warning, as the processor expects raw pixels). Normalized pixels (values outside
    those ranges) are refused: call the model with `pixel_values` for those. One image and one text (not in lists)
    give a list of one result. An adapter created with `missing_modalities=True` also answers for images alone
    (`texts=None`), texts alone (`images=None`), and lists with None (or an empty text) in the places of what a pair
    lacks.
    """
    if images is None and texts is None:
        raise ValueError("Give images, texts, or both.")
    if isinstance(texts, str):
        texts = [texts]
    if torch.is_tensor(images) and images.dim() == 4:
        images = list(images)  # a batch of (channels, height, width) images
    elif images is not None and not isinstance(images, (list, tuple)):
        images = [images]
    images = [None] * len(texts) if images is None else list(images)
    texts = [None] * len(images) if texts is None else list(texts)
    if len(images) != len(texts):
        raise ValueError(f"Give one text per image: got {len(images)} images and {len(texts)} texts.")
    lacking = [i for i, (image, text) in enumerate(zip(images, texts, strict=True)) if image is None
               or text_is_absent(text)]  # fmt: skip
    empty = [i for i in lacking if images[i] is None and text_is_absent(texts[i])]
    if empty:
        raise ValueError(
            f"Pair {empty[0]} has neither an image nor a text ({len(empty)} such pair(s)): there is nothing to "
            "classify. Drop it from images and texts."
        )
    config = model.active_peft_config
    if lacking and adapters is not None:
        raise ValueError(
            f"Pair {lacking[0]} lacks its {'image' if images[lacking[0]] is None else 'text'}: answers from several "
            "adapters at once take complete pairs. Predict the pairs that lack a modality with each adapter alone."
        )
    if lacking and not config.missing_modalities:
        i = lacking[0]
        raise ValueError(
            f"Pair {i} has no {'image' if images[i] is None else 'text'} ({len(lacking)} pair(s) lack one), but this "
            "adapter was created without missing_modalities: it was never trained to answer without both. Give "
            "every pair both, or train an adapter with MITPConfig(missing_modalities=True)."
        )
    images = [None if image is None else _raw(image) for image in images]
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1 (the number of labels per result), got {top_k!r}.")
    if processor is None:
        if not config.base_model_name_or_path:
            raise ValueError("The adapter records no base model to take a processor from; pass processor=...")
        processor = AutoProcessor.from_pretrained(config.base_model_name_or_path)
    names = [model.active_adapter] if adapters is None else list(adapters)
    collate = MITPCollator(processor, model.text_room(names), missing="mask" if lacking else "error")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: dict[str, list] = {name: [] for name in names}
    try:
        for start in range(0, len(texts), batch_size):
            rows = [
                {"image": i, "text": t}
                for i, t in zip(images[start : start + batch_size], texts[start : start + batch_size], strict=True)
            ]
            batch = {k: v.to(device) for k, v in collate(rows).items()}
            with torch.no_grad():
                outputs = {names[0]: model(**batch)} if adapters is None else model.fan_out(adapters, **batch)
            for name, output in outputs.items():
                results[name] += _answers(output.logits.float(), model.peft_config[name], top_k, threshold)
    finally:
        model.train(was_training)
    return results[names[0]] if adapters is None else results


def _answers(logits: torch.Tensor, config: Any, top_k: int, threshold: float) -> list[dict[str, list]]:
    """Label names and scores from an adapter's logits: its top k, or every label over the threshold."""
    id2label = config.id2label or {i: str(i) for i in range(config.num_labels)}
    if config.problem_type == "multi_label_classification":
        return _multi_label(logits, threshold, id2label)
    return _top_k(logits, top_k, id2label)


def _raw(image: Any) -> Any:
    """An image as every processor takes it: PIL and integer arrays as they are; float arrays and tensors as uint8
    (floats in [0, 1] scaled to 0..255 first, with a warning); normalized pixels refused."""
    if not (torch.is_tensor(image) or isinstance(image, np.ndarray)):
        return image
    values = torch.as_tensor(image)
    if not values.is_floating_point():
        return image
    low, high = values.min().item(), values.max().item()
    if low < 0 or high > 255:
        raise ValueError(
            f"predict takes raw images (0..255, or floats in [0, 1]), but this one has values in [{low:.3g}, "
            f"{high:.3g}]: it looks normalized already, and the processor would normalize it again. Pass the raw "
            "image, or call the model with pixel_values=... yourself."
        )
    if high <= 1:
        warnings.warn(
            "predict got a float image with values in [0, 1]; it scales it to 0..255, as the processor expects "
            "raw pixels (it divides by 255 itself). Pass uint8 images (or floats in 0..255) to silence this.",
            stacklevel=3,
        )
        values = values * 255
    converted = values.round().to(torch.uint8)
    return converted.numpy() if isinstance(image, np.ndarray) else converted


def _top_k(logits: torch.Tensor, k: int, id2label: dict[int, str]) -> list[dict[str, list]]:
    scores, indices = logits.softmax(dim=-1).topk(min(k, logits.shape[-1]), dim=-1)
    return [
        {"labels": [id2label[i] for i in row.tolist()], "scores": values.tolist()}
        for values, row in zip(scores, indices, strict=True)
    ]


def _multi_label(logits: torch.Tensor, threshold: float, id2label: dict[int, str]) -> list[dict[str, list]]:
    results = []
    for probabilities in logits.sigmoid():
        chosen = sorted((p, i) for i, p in enumerate(probabilities.tolist()) if p >= threshold)[::-1]
        results.append({"labels": [id2label[i] for _, i in chosen], "scores": [p for p, _ in chosen]})
    return results
