"""`MITPCollator`: rows of images, texts and labels as model inputs, with the backbone's processor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from PIL import Image


@dataclass
class MITPCollator:
    """Turns rows with `image`, `text` and `label` / `labels` into model inputs with the backbone's processor.

    Texts are truncated to `max_text_length`, the room the text tower has next to the prompts
    (`model.max_text_length`), and padded to the batch's longest (`padding="max_length"`: to `max_text_length`, so
    that every batch has one length, as the extraction cache needs). Multi-label rows (lists of label indices) become
    multi-hot vectors of `num_labels`.
    """

    processor: Any
    max_text_length: Optional[int]
    num_labels: Optional[int] = None
    padding: Union[bool, str] = True

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        missing = [column for column in ("image", "text") if column not in rows[0]]
        if missing:
            raise ValueError(
                f"MITPCollator got rows without {missing} (their columns: {sorted(rows[0])}); it needs 'image' and "
                "'text', and 'label' or 'labels' to train. With transformers.Trainer, pass "
                "TrainingArguments(remove_unused_columns=False): by default Trainer drops every column the model's "
                "forward does not name, and the raw image and text are not model inputs."
            )
        batch = self.processor(
            text=[row["text"] for row in rows],
            images=[_rgb(row["image"]) for row in rows],
            return_tensors="pt",
            padding=self.padding,
            truncation=True,
            max_length=self.max_text_length,
        )
        if "labels" in rows[0]:
            if self.num_labels is None:
                raise ValueError("Multi-label rows need MITPCollator(num_labels=...) to build multi-hot targets.")
            batch["labels"] = torch.zeros(len(rows), self.num_labels)
            for i, row in enumerate(rows):
                batch["labels"][i, row["labels"]] = 1.0
        elif "label" in rows[0]:
            batch["labels"] = torch.tensor([row["label"] for row in rows])
        return dict(batch)


def _rgb(image: Any) -> Any:
    """A PIL image decoded as three channels (grey and RGBA photos are common; processors expect RGB); other
    images (arrays, tensors) as they are. A broken file is named here, where it is first decoded."""
    if not isinstance(image, Image.Image):
        return image
    try:
        return image.convert("RGB")
    except OSError as error:
        where = getattr(image, "filename", "") or "an image of this batch"
        raise ValueError(
            f"{where} cannot be decoded ({error}): it is truncated or broken. Replace or remove it (the readers of "
            "mitp_peft.data decode every image once, with verify_images=True, and name its row)."
        ) from error
