"""What the MITP engine needs to know about one tower of a dual encoder.

A tower adapter knows how its family embeds inputs, masks attention, runs one encoder layer and pools. The engine
drives both towers through this interface and never names a family. Adapters are plain objects, not modules: they
hold no parameters and are never saved.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Attention backends that accept an arbitrary dense mask: the prompt mask of METHOD.md step 4 is not causal, so
# backends that only know "causal + padding" (flash attention) cannot express it.
DENSE_MASK_BACKENDS = ("sdpa", "eager")


@dataclass
class TowerState:
    """A tower's token stream and what pooling needs to find its token again."""

    hidden: torch.Tensor
    """(batch, tokens, width), without prompts."""
    token_mask: Optional[torch.Tensor] = None
    """(batch, tokens) bool, True for real tokens, False for padding; None when every token is real."""
    pool_index: Optional[torch.Tensor] = None
    """(batch,) position of the pooled token (text towers)."""


def find_layers(tower: nn.Module) -> str:
    """The path of a tower's encoder layers: the module list with one entry per hidden layer.

    Found by structure because the path differs between families and transformers versions (`encoder.layer`,
    `encoder.layers`, `layers`, `roberta.encoder.layers`).
    """
    depth = tower.config.num_hidden_layers
    found = [name for name, m in tower.named_modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
    if not found:
        raise ValueError(f"Found no list of {depth} encoder layers in {type(tower).__name__}.")
    return min(found, key=lambda name: name.count("."))


def require_pooler(tower: nn.Module, what: str) -> None:
    """`VisionTextDualEncoderModel` pools with its towers' poolers: refuse a tower built without one."""
    if getattr(tower, "pooler", None) is None:
        raise ValueError(
            f"{type(tower).__name__} has no pooler, but VisionTextDualEncoderModel pools {what} with it. "
            "Load the model with its pooling layer (add_pooling_layer=True)."
        )


class Tower(ABC):
    """One tower (text or vision) of a dual encoder, as MITP drives it."""

    modality: str
    causal: bool = False
    """Whether the tower's own tokens attend causally (CLIP text) rather than bidirectionally."""

    input_names: tuple[str, ...]
    """The forward arguments this tower reads."""

    def __init__(self, tower: nn.Module, path: str, projection: Optional[nn.Module] = None) -> None:
        self.model = tower
        self.config = tower.config
        self.projection = projection
        """The dual encoder's projection of this tower's pooled features into the shared space (None: identity)."""
        self._layers_path = find_layers(tower)
        self.layers_path = f"{path}.{self._layers_path}"
        """Where the encoder layers sit in the dual encoder, e.g. `text_model.encoder.layers`."""

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self._layers_path)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def pooled_size(self) -> int:
        """Width of the pooled features (some families pool through a projection)."""
        return self.hidden_size

    def describe(self) -> dict[str, int]:
        """The tower's shape, as an adapter records what it was built for."""
        shape = {"layers": self.num_layers, "width": self.hidden_size}
        for name in ("max_position_embeddings", "image_size", "patch_size"):
            value = getattr(self.config, name, None)
            if isinstance(value, int):
                shape[name] = value
        return shape

    @property
    def embed_size(self) -> int:
        """Width of the shared image-text space the dual encoder compares in."""
        return self.pooled_size if self.projection is None else self.projection.out_features

    def embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features as the dual encoder compares them: projected (where it projects) and L2-normalized."""
        if self.projection is not None:
            pooled = self.projection(pooled.to(self.projection.weight.dtype))
        return F.normalize(pooled, dim=-1)

    def features(self, inputs: dict) -> torch.Tensor:
        """The tower's own pooled features, without prompts."""
        state = self.embed(inputs)
        return self.pool(state, self.run(state.hidden, self.attention_mask(state, 0), 0, self.num_layers))

    @property
    def attn_implementation(self) -> str:
        return self.config._attn_implementation

    @property
    def max_positions(self) -> Optional[int]:
        """How many tokens the tower was pre-trained to attend over; None where images set the length."""
        return None

    @property
    def needs_mask(self) -> bool:
        """Whether this tower may need an attention mask (then the backend must take dense masks)."""
        return True

    def embed(self, inputs: dict) -> TowerState:
        """Embed the inputs up to the first encoder layer."""
        return self.state(self.embed_tokens(inputs), inputs)

    @abstractmethod
    def embed_tokens(self, inputs: dict) -> torch.Tensor:
        """(batch, tokens, width): the input of the first encoder layer."""

    @abstractmethod
    def state(self, hidden: torch.Tensor, inputs: dict) -> TowerState:
        """The state of a token stream taken from this tower at any layer (masks and pooled positions)."""

    @abstractmethod
    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        """Pool the final token stream (without prompts) exactly as the backbone does."""

    def run_layer(
        self, layer: nn.Module, hidden: torch.Tensor, attention_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Run one encoder layer; families whose layers return tuples take the first element."""
        out = layer(hidden, attention_mask=attention_mask)
        return out[0] if isinstance(out, tuple) else out

    def run(self, hidden: torch.Tensor, attention_mask: Optional[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        """Run layers [start, stop) without prompts."""
        for layer in self.layers[start:stop]:
            hidden = self.run_layer(layer, hidden, attention_mask)
        return hidden

    def attention_mask(self, state: TowerState, num_prompts: int) -> Optional[torch.Tensor]:
        """The mask for a layer whose input is `[tokens ; num_prompts prompts]`, in the backend's format.

        Among the tower's own tokens the tower's rule holds (causal or not) and padding is never attended. Prompts
        see every real token and are seen by every token (METHOD.md step 4). A row left with nothing to attend to (a
        left-padding token in a causal tower) attends to itself: an empty softmax row makes sdpa return NaN.
        """
        if not self.causal and state.token_mask is None:
            return None
        batch, length = state.hidden.shape[:2]
        device = state.hidden.device
        total = length + num_prompts
        # Built in integers and compared to a bool only at the end: inductor's CPU code generator fails on the
        # concatenated and indexed bool tensors of the plain formulation (mixed VecMask types).
        position = torch.arange(total, device=device)
        is_prompt = position >= length
        if state.token_mask is None:
            keys = torch.ones(batch, total, dtype=torch.int32, device=device)
        else:
            keys = torch.cat(
                [state.token_mask.to(torch.int32), torch.ones(batch, num_prompts, dtype=torch.int32, device=device)], 1
            )
        allowed = keys[:, None, :] * torch.ones(total, 1, dtype=torch.int32, device=device)  # (batch, query, key)
        if self.causal:
            # Text rows see earlier text and every prompt; prompt rows see everything (then padding is removed).
            order = (position[None, :] <= position[:, None]) | is_prompt[None, :] | is_prompt[:, None]
            allowed = allowed * order.to(torch.int32)
        empty_rows = (allowed.sum(dim=-1, keepdim=True) == 0).to(torch.int32)
        allowed = allowed + empty_rows * torch.eye(total, dtype=torch.int32, device=device)
        mask = allowed > 0
        return self._to_backend(mask[:, None], state.hidden.dtype)

    def _to_backend(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.attn_implementation == "sdpa":
            return mask
        if self.attn_implementation == "eager":
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        raise ValueError(self.unsupported_backend_message())

    def unsupported_backend_message(self) -> str:
        return (
            f"MITP builds its own attention masks for the {self.modality} tower ({type(self.model).__name__}), "
            f"which the {self.attn_implementation!r} attention backend cannot take. Load the backbone with "
            f"attn_implementation='sdpa' (or 'eager'): supported backends are {DENSE_MASK_BACKENDS}."
        )


class TextTower(Tower):
    """A text tower: embeds token ids, masks padding, pools one token per sample."""

    modality = "text"
    input_names = ("input_ids", "attention_mask", "position_ids")
    zero_shot_padding = "longest"
    """How class captions are padded for the zero-shot classifier: as the tower was pre-trained to read them."""

    @property
    def embeddings(self) -> nn.Module:
        return self.model.embeddings

    @property
    def max_positions(self) -> Optional[int]:
        return self.config.max_position_embeddings

    def embed_tokens(self, inputs: dict) -> torch.Tensor:
        given = {name: inputs.get(name) for name in self.input_names if name != "attention_mask"}
        return self.embeddings(**{name: value for name, value in given.items() if value is not None})

    def state(self, hidden: torch.Tensor, inputs: dict) -> TowerState:
        input_ids = inputs["input_ids"].to(hidden.device)
        pooled = self.pooled_position(input_ids)
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            return TowerState(hidden, self.implied_token_mask(input_ids, pooled), pooled)
        return TowerState(hidden, attention_mask.to(device=hidden.device, dtype=torch.bool), pooled)

    @abstractmethod
    def pooled_position(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch,) the position the backbone pools."""

    def implied_token_mask(self, input_ids: torch.Tensor, pooled: torch.Tensor) -> Optional[torch.Tensor]:
        """Which tokens are real when the batch comes without an attention mask (None: all of them, as the tower
        itself reads such a batch). MITP's prompts and hub read every token they are not told is padding, so a
        family whose padding can be told from the ids says so here, and a padded batch gives the same answer with or
        without its mask."""
        return None

    def room(self, num_prompts: int) -> Optional[int]:
        """How many text tokens fit next to `num_prompts` prompts (None: no limit); tokenize with this length."""
        return None if self.max_positions is None else self.max_positions - num_prompts

    def check_room(self, num_prompts: int) -> None:
        """Refuse a prompt length that leaves no room for a text (at least its start and end tokens)."""
        room = self.room(num_prompts)
        if room is not None and room < 2:
            raise ValueError(
                f"prompt_length={num_prompts} leaves no room for text: the text tower attends over at most "
                f"{self.max_positions} tokens, and the text needs at least 2 (start and end). Choose prompt_length <= "
                f"{self.max_positions - 2}."
            )

    def fitted_length(self, inputs: dict, num_prompts: int) -> Optional[int]:
        """How many token columns to keep so that the prompts fit within `max_positions` (None: all of them), or an
        error that says how to tokenize.

        Texts tokenized to at most `MITPModel.max_text_length` tokens fit as they are, and nothing here reads a
        tensor's values (no host sync). Longer ones (e.g. padded to the tower's full length) keep all but their
        trailing columns that are padding in every row and pooled in none: nothing attends to those and nothing
        pools them, so the result is exactly the same; finding them reads the mask back from the device once per
        such batch.
        """
        input_ids = inputs["input_ids"]
        room = self.room(num_prompts)
        length = input_ids.shape[1]
        mask = inputs.get("attention_mask")
        if length > room and mask is not None:
            real_columns = mask.bool().any(dim=0).nonzero()
            if real_columns.numel() == 0:
                raise ValueError("Every text in the batch is empty: attention_mask is all zeros.")
            length = max(int(real_columns.max()), int(self.pooled_position(input_ids).max())) + 1
        if length > room:
            raise ValueError(
                f"The text has {length} tokens, but with prompt_length={num_prompts} the {type(self.model).__name__} "
                f"has room for {room} ({self.max_positions} positions minus the prompts). Tokenize with "
                f"truncation=True, max_length={room} (see MITPModel.max_text_length)."
            )
        return None if length == input_ids.shape[1] else length


class FirstTokenTextTower(TextTower):
    """Text towers that pool the first token ([CLS] / <s>): BERT-likes."""

    input_names = ("input_ids", "attention_mask", "token_type_ids", "position_ids")

    def pooled_position(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)

    def implied_token_mask(self, input_ids: torch.Tensor, pooled: torch.Tensor) -> Optional[torch.Tensor]:
        # BERT-like vocabularies keep a padding token that no text holds.
        pad = self.config.pad_token_id
        return None if pad is None else input_ids != pad


class VisionTower(Tower):
    """A vision tower: embeds pixels into patch tokens; images set the length, so no room check."""

    modality = "vision"
    input_names = ("pixel_values", "interpolate_pos_encoding")
    pixel_ndim = 4
    """Rank of `pixel_values`: (batch, channels, height, width) for most families."""

    @property
    def needs_mask(self) -> bool:
        return False

    def check_pixels(self, pixel_values: torch.Tensor) -> None:
        """Refuse pixels of another layout than the image processor gives, naming the fix."""
        if pixel_values.dim() != self.pixel_ndim:
            raise ValueError(
                f"pixel_values must have {self.pixel_ndim} dimensions, batch first, as the image processor returns "
                f"them; got shape {tuple(pixel_values.shape)}."
            )
        if not pixel_values.is_floating_point():
            warnings.warn(
                f"pixel_values are {pixel_values.dtype}: raw pixels, not the normalized floats the image processor "
                "gives; the towers read them as they are, which is not what they were trained on. Pass the images "
                "through the backbone's processor (processor(images=..., return_tensors='pt')), or use "
                "mitp_peft.predict.",
                stacklevel=2,
            )
        channels = getattr(self.config, "num_channels", None)
        if self.pixel_ndim == 4 and channels and pixel_values.shape[1] != channels == pixel_values.shape[-1]:
            raise ValueError(
                f"pixel_values has shape {tuple(pixel_values.shape)}: channels last. The image processor gives "
                f"(batch, {channels}, height, width); pass it that, or pixel_values.permute(0, 3, 1, 2)."
            )

    def embed_tokens(self, inputs: dict) -> torch.Tensor:
        return self.model.embeddings(
            inputs["pixel_values"], interpolate_pos_encoding=inputs.get("interpolate_pos_encoding") or False
        )

    def state(self, hidden: torch.Tensor, inputs: dict) -> TowerState:
        return TowerState(hidden)
