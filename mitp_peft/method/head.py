"""MITP's classification heads, what they read and what the model returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
from torch import nn
from transformers.utils import ModelOutput


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
    """Classifies an (image, text) pair from what the towers produced; one subclass per kind, registered in `HEADS`.

    Every head reads both towers' pooled features (and the hub memory, with `head_uses_memory`). With
    `zero_shot=True` it also reads the image embedding through `class_embeddings`, one row per class:
    `init_head_zero_shot` fills it with the class names' text embeddings times the backbone's logit scale and zeroes
    the layers that write logits, so training starts from the backbone's zero-shot classifier.
    """

    kind: str
    reads_agreement = False
    """Whether the head reads the agreement: the element-wise product of the two normalized embeddings in the dual
    encoder's shared space, times its width. The backbone was pre-trained to compare image and text there (their dot
    product is its similarity), so this parameter-free feature carries "does the image fit the text", which a linear
    function of the separate features cannot express. The width puts its elements (each about 1/width for unit
    vectors) at the scale of the other features; unscaled, a head barely sees them."""

    def __init__(
        self,
        text_size: int,
        vision_size: int,
        embed_size: int,
        num_labels: int,
        memory_sizes: Optional[tuple[int, int]] = None,
        zero_shot: bool = False,
        hidden_size: int = 384,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        text_memory, vision_memory = memory_sizes or (0, 0)
        self.vision_width = vision_size + vision_memory
        self.text_width = text_size + text_memory
        self.agreement_scale = float(embed_size)
        self.build(embed_size if self.reads_agreement else 0, num_labels, hidden_size, device)
        self.class_embeddings = nn.Linear(embed_size, num_labels, bias=False, device=device) if zero_shot else None

    @classmethod
    def summary(cls) -> str:
        """The kind in one line (its docstring's first sentence), as the config's help shows it."""
        return cls.__doc__.split(". ")[0].split(":")[0].strip().rstrip(".")

    def build(self, agreement_size: int, num_labels: int, hidden_size: int, device: Optional[torch.device]) -> None:
        """Create the kind's layers (`self.classifier` unless a kind says otherwise)."""
        width = self.vision_width + self.text_width + agreement_size
        self.classifier = nn.Linear(width, num_labels, device=device)

    def classify(self, vision: torch.Tensor, text: torch.Tensor, agreement: Optional[torch.Tensor]) -> torch.Tensor:
        """Logits from each modality's features (pooled, and memory where read) and, where read, the agreement."""
        return self.classifier(torch.cat([vision, text] + ([agreement] if agreement is not None else []), dim=-1))

    @property
    def output_layers(self) -> tuple[nn.Linear, ...]:
        """The layers that write logits (zeroed for the zero-shot start)."""
        return (self.classifier,)

    @property
    def needs_embeddings(self) -> bool:
        return self.reads_agreement or self.class_embeddings is not None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, inputs: HeadInputs) -> torch.Tensor:
        x = HeadInputs(*(None if value is None else value.to(self.dtype) for value in inputs))
        vision = torch.cat([x.image_features] + ([x.image_memory] if x.image_memory is not None else []), dim=-1)
        text = torch.cat([x.text_features] + ([x.text_memory] if x.text_memory is not None else []), dim=-1)
        agreement = x.image_embeds * x.text_embeds * self.agreement_scale if self.reads_agreement else None
        logits = self.classify(vision, text, agreement)
        if self.class_embeddings is not None:
            logits = logits + self.class_embeddings(x.image_embeds)
        return logits

    @torch.no_grad()
    def start_from_zero_shot(self, class_embeds: torch.Tensor, scale: float, bias: float = 0.0) -> None:
        """Make the head the backbone's zero-shot classifier: logits = scale * image_embed . class_embed + bias."""
        if self.class_embeddings is None:
            raise ValueError("This head was built without zero-shot class embeddings (zero_shot=False).")
        for output in self.output_layers:
            # per_modality averages two logit layers, so each carries the whole bias.
            output.weight.zero_()
            output.bias.fill_(bias)
        self.class_embeddings.weight.copy_(class_embeds * scale)


class LinearHead(MITPHead):
    """One linear layer on both towers' pooled features: the paper's head."""

    kind = "linear"


class AgreementHead(MITPHead):
    """One linear layer on both towers' pooled features and their agreement in the dual encoder's space."""

    kind = "agreement"
    reads_agreement = True


class PerModalityHead(MITPHead):
    """One linear layer per tower, logits averaged, as PMF does."""

    kind = "per_modality"

    def build(self, agreement_size: int, num_labels: int, hidden_size: int, device: Optional[torch.device]) -> None:
        self.vision = nn.Linear(self.vision_width, num_labels, device=device)
        self.text = nn.Linear(self.text_width, num_labels, device=device)

    def classify(self, vision: torch.Tensor, text: torch.Tensor, agreement: Optional[torch.Tensor]) -> torch.Tensor:
        return (self.vision(vision) + self.text(text)) / 2

    @property
    def output_layers(self) -> tuple[nn.Linear, ...]:
        return (self.vision, self.text)


class MLPHead(MITPHead):
    """Linear-GELU-Linear (`hidden_size` wide) on what the agreement head reads: it can also compare image and text
    where the dual encoder's shared space does not align them (images unlike its pre-training)."""

    kind = "mlp"
    reads_agreement = True

    def build(self, agreement_size: int, num_labels: int, hidden_size: int, device: Optional[torch.device]) -> None:
        width = self.vision_width + self.text_width + agreement_size
        self.classifier = nn.Sequential(
            nn.Linear(width, hidden_size, device=device),
            nn.GELU(),
            nn.Linear(hidden_size, num_labels, device=device),
        )

    @property
    def output_layers(self) -> tuple[nn.Linear, ...]:
        return (self.classifier[-1],)


HEADS: dict[str, type[MITPHead]] = {head.kind: head for head in (LinearHead, AgreementHead, PerModalityHead, MLPHead)}
"""The head kinds `MITPConfig.head` names."""


def build_head(kind: str, **sizes: Any) -> MITPHead:
    """A head of the named kind (see `HEADS`) with the given sizes (`MITPHead`'s arguments)."""
    if kind not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {kind!r}.")
    return HEADS[kind](**sizes)
