"""MITP's classification head, its output, and the loss written the way `transformers.Trainer` expects it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .checks import require

IGNORE_INDEX = -100
HEADS = ("linear", "agreement", "per_modality", "mlp")


@dataclass
class MITPOutput(ModelOutput):
    """What an MITP model returns."""

    loss: Optional[torch.Tensor] = None
    """Classification loss, when labels were given."""
    logits: Optional[torch.Tensor] = None
    """(batch, num_labels) class scores, before softmax / sigmoid."""
    image_features: Optional[torch.Tensor] = None
    """(batch, vision width) pooled image features after MITP, before the contrastive projection."""
    text_features: Optional[torch.Tensor] = None
    """(batch, text width) pooled text features after MITP, before the contrastive projection."""


class HeadInputs(NamedTuple):
    """What the head may read: both towers' pooled features, their embeddings in the dual encoder's shared space
    (projected and normalized, as the backbone compares them; None where the head does not need them), and the
    last hub memory averaged over prompts (None unless `head_uses_memory`)."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    image_embeds: Optional[torch.Tensor] = None
    text_embeds: Optional[torch.Tensor] = None
    image_memory: Optional[torch.Tensor] = None
    text_memory: Optional[torch.Tensor] = None


class MITPHead(nn.Module):
    """Classifies an (image, text) pair from what the towers produced.

    - `linear`: one linear layer on both towers' pooled features (and the hub memory, with `head_uses_memory`).
    - `agreement`: the same, plus the element-wise product of the two normalized embeddings in the dual encoder's
      shared space. The backbone was pre-trained to compare image and text there (their dot product is its
      similarity), so this parameter-free feature carries "does the image fit the text", which a linear function of
      the separate features cannot express.
    - `per_modality`: one linear layer per tower, logits averaged, as PMF does.
    - `mlp`: Linear-GELU-Linear (`hidden_size` wide) on what `agreement` reads: it can also compare image and text
      where the dual encoder's shared space does not align them (images unlike its pre-training).

    With `zero_shot=True` the head also reads the image embedding through `class_embeddings`, one row per class:
    `init_head_zero_shot` fills it with the class names' text embeddings times the backbone's logit scale and zeroes
    everything else, so training starts from the backbone's zero-shot classifier.
    """

    def __init__(
        self,
        kind: str,
        text_size: int,
        vision_size: int,
        embed_size: int,
        num_labels: int,
        memory_sizes: Optional[tuple[int, int]] = None,
        zero_shot: bool = False,
        hidden_size: int = 512,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {kind!r}.")
        self.kind = kind
        text_memory, vision_memory = memory_sizes or (0, 0)
        if kind == "per_modality":
            self.vision = nn.Linear(vision_size + vision_memory, num_labels, device=device)
            self.text = nn.Linear(text_size + text_memory, num_labels, device=device)
        else:
            agreement = embed_size if kind in ("agreement", "mlp") else 0
            features = vision_size + text_size + vision_memory + text_memory + agreement
            if kind == "mlp":
                self.classifier = nn.Sequential(
                    nn.Linear(features, hidden_size, device=device),
                    nn.GELU(),
                    nn.Linear(hidden_size, num_labels, device=device),
                )
            else:
                self.classifier = nn.Linear(features, num_labels, device=device)
        self.class_embeddings = nn.Linear(embed_size, num_labels, bias=False, device=device) if zero_shot else None

    @property
    def needs_embeddings(self) -> bool:
        return self.kind in ("agreement", "mlp") or self.class_embeddings is not None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, inputs: HeadInputs) -> torch.Tensor:
        cast = {name: None if value is None else value.to(self.dtype) for name, value in inputs._asdict().items()}
        x = HeadInputs(**cast)
        vision = [x.image_features] + ([x.image_memory] if x.image_memory is not None else [])
        text = [x.text_features] + ([x.text_memory] if x.text_memory is not None else [])
        if self.kind == "per_modality":
            logits = (self.vision(torch.cat(vision, dim=-1)) + self.text(torch.cat(text, dim=-1))) / 2
        else:
            agreement = [x.image_embeds * x.text_embeds] if self.kind in ("agreement", "mlp") else []
            logits = self.classifier(torch.cat(vision + text + agreement, dim=-1))
        if self.class_embeddings is not None:
            logits = logits + self.class_embeddings(x.image_embeds)
        return logits

    @torch.no_grad()
    def start_from_zero_shot(self, class_embeds: torch.Tensor, scale: float, bias: float = 0.0) -> None:
        """Make the head the backbone's zero-shot classifier: logits = scale * image_embed . class_embed + bias."""
        if self.class_embeddings is None:
            raise ValueError("This head was built without zero-shot class embeddings (zero_shot=False).")
        branches = (self.vision, self.text) if self.kind == "per_modality" else (self.classifier,)
        for branch in branches:
            # The layer that writes logits; per_modality averages two, so each carries the whole bias.
            output = branch[-1] if isinstance(branch, nn.Sequential) else branch
            output.weight.zero_()
            output.bias.fill_(bias)
        self.class_embeddings.weight.copy_(class_embeds * scale)


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str,
    num_items_in_batch: Optional[Union[int, torch.Tensor]] = None,
) -> torch.Tensor:
    """Cross-entropy (single-label) or BCE-with-logits (multi-label), summed and divided by the item count.

    `Trainer` passes `num_items_in_batch`, the number of labels over all gradient-accumulation micro-batches and all
    processes, and then neither divides by the accumulation steps nor leaves DDP's averaging uncorrected. A plain
    mean would be scaled wrongly there; sum / num_items_in_batch is exact. Without it, this is the plain mean.
    Single-label targets of -100 are ignored, as in transformers.
    """
    labels = check_labels(labels, logits, problem_type)
    if problem_type == "single_label_classification":
        total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        count = (labels != IGNORE_INDEX).sum()
    else:
        total = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="sum")
        count = torch.tensor(labels.numel(), device=labels.device)
    if num_items_in_batch is None:
        return total / count.clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def check_labels(labels: torch.Tensor, logits: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Validate labels against the problem type and the number of classes; return them ready for the loss."""
    batch, num_labels = logits.shape
    labels = labels.to(logits.device)
    if problem_type == "single_label_classification":
        if labels.dim() != 1 or labels.shape[0] != batch:
            raise ValueError(
                f"For single_label_classification, labels must be class indices of shape ({batch},), got shape "
                f"{tuple(labels.shape)}. For several labels per sample use problem_type='multi_label_classification'."
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"Single-label labels must be integer class indices, got dtype {labels.dtype}.")
        valid = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < num_labels))
        require(
            valid,
            f"labels are out of range: num_labels={num_labels} allows 0..{num_labels - 1} (and {IGNORE_INDEX} to "
            "ignore a sample).",
            lambda: f" Got {sorted(set(labels[~valid].tolist()))}.",
        )
        return labels.long()
    if tuple(labels.shape) != (batch, num_labels):
        raise ValueError(
            f"For multi_label_classification, labels must be multi-hot of shape ({batch}, {num_labels}), got "
            f"{tuple(labels.shape)}."
        )
    labels = labels.float()
    require((labels >= 0) & (labels <= 1), "Multi-label labels must lie in [0, 1] (multi-hot targets).")
    return labels
