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
    missing: str = "error"
    """Rows whose image is None or whose text is None or empty: `"error"` refuses them, naming the row; `"mask"`
    gives the model `image_present` / `text_present` masks (an adapter with missing_modalities), with a blank image or
    an empty text in the missing places, and leaves a modality that no row of the batch has out altogether (its tower
    then does not run); `"fill"` gives the blank image or empty text alone, as if they were real (a model unaware of
    missingness)."""

    def __post_init__(self) -> None:
        if self.missing not in MISSING_HANDLING:
            raise ValueError(f"missing must be one of {MISSING_HANDLING}, got {self.missing!r}.")

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        missing = [column for column in ("image", "text") if column not in rows[0]]
        if missing:
            raise ValueError(
                f"MITPCollator got rows without {missing} (their columns: {sorted(rows[0])}); it needs 'image' and "
                "'text', and 'label' or 'labels' to train. With transformers.Trainer, pass "
                "TrainingArguments(remove_unused_columns=False): by default Trainer drops every column the model's "
                "forward does not name, and the raw image and text are not model inputs."
            )
        has_image = [row["image"] is not None for row in rows]
        has_text = [not text_is_absent(row["text"]) for row in rows]
        lacking = [i for i, (image, text) in enumerate(zip(has_image, has_text, strict=True)) if not (image and text)]
        if lacking and self.missing == "error":
            i = lacking[0]
            what = "image" if not has_image[i] else "text"
            raise ValueError(
                f"Row {i} of the batch has no {what} ({len(lacking)} row(s) lack one). To train and predict with "
                "samples that lack a modality, create the adapter with MITPConfig(missing_modalities=True) and the "
                "collator with MITPCollator(..., missing='mask') (the readers take allow_missing=True)."
            )
        masked = self.missing == "mask"
        images = [_rgb(row["image"]) if has else BLANK for row, has in zip(rows, has_image, strict=True)]
        texts = [row["text"] if has else "" for row, has in zip(rows, has_text, strict=True)]
        run_image, run_text = (any(has_image) or not masked), (any(has_text) or not masked)
        batch = self.processor(
            text=texts if run_text else None,
            images=images if run_image else None,
            return_tensors="pt",
            padding=self.padding,
            truncation=True,
            max_length=self.max_text_length,
        )
        if masked and run_image and not all(has_image):
            batch["image_present"] = torch.tensor(has_image)
        if masked and run_text and not all(has_text):
            batch["text_present"] = torch.tensor(has_text)
        if "labels" in rows[0]:
            if self.num_labels is None:
                raise ValueError("Multi-label rows need MITPCollator(num_labels=...) to build multi-hot targets.")
            batch["labels"] = torch.zeros(len(rows), self.num_labels)
            for i, row in enumerate(rows):
                batch["labels"][i, row["labels"]] = 1.0
        elif "label" in rows[0]:
            labels = [row["label"] for row in rows]
            names = [label for label in labels if isinstance(label, str)]
            if names:
                raise ValueError(
                    f"The label column holds class names such as {names[0]!r}; the model takes class indices. Map "
                    "them before training: dataset.class_encode_column('label') (then its features name the classes "
                    "for MITPConfig(id2label=...)), or label2id[name] for each row."
                )
            batch["labels"] = torch.tensor(labels)
        return dict(batch)


MISSING_HANDLING = ("error", "mask", "fill")
BLANK = Image.new("RGB", (224, 224))
"""What stands in a missing image's place (the processor resizes it); a missing-aware model never reads it."""


def text_is_absent(text: Any) -> bool:
    """None, empty or only spaces: a text a sample lacks, for the collator and the readers alike."""
    return text is None or not str(text).strip()


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
