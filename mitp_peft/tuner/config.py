"""`MITPConfig`: the settings of one MITP adapter."""

from __future__ import annotations

import inspect
import os
import textwrap
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional

from peft import PeftConfig

from ..method.head import HEADS
from ..method.hub import HUB_ATTENTIONS, HUB_READS
from .cards import render_card
from .loading import check_weights
from .peft_type import MITP_PEFT_TYPE

DEFAULT_NUM_INTERACTION_LAYERS = 4
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")
# The roles of MITPConfig's fields (their metadata's "role"; see `mitp_fields`).
SETTING, DATA, LABELS, RECORD = "setting", "data", "labels", "record"


@dataclass
class MITPConfig(PeftConfig):
    """Configuration of an MITP (Memory-Inspired Temporal Prompt Interaction) adapter.

    MITP appends temporal prompts to a few *interaction layers* of both towers of a frozen dual encoder, lets the
    prompts of the two modalities interact in a parameter-free, similarity-based *memory hub*, and generates the next
    interaction layer's prompts from the hub's memory. The head (an MLP by default) classifies the pooled features of
    both towers and their agreement in the dual encoder's own space. See `docs/METHOD.md` for the design and which
    parts the paper states.

    Recommended training: `warm_start_head` first, then AdamW with warm-up and linear decay; the learning rates the
    accuracy study chose per task are in `docs/results.md`.

    Interaction layers are paired from the top: by default the last `num_interaction_layers` layers of each tower.
    Explicit `text_layers` / `vision_layers` override that. Layer indices are checked against the backbone when the
    adapter is created; the resolved lists are then stored here, so a saved adapter names its layers explicitly.
    """

    prompt_length: int = field(default=8, metadata={"help": "Number of prompt tokens per modality (M)."})
    num_interaction_layers: Optional[int] = field(
        default=None,
        metadata={
            "help": f"Number of interaction layer pairs (K): the last K layers of each tower. Default "
            f"{DEFAULT_NUM_INTERACTION_LAYERS} when no explicit layer lists are given."
        },
    )
    text_layers: Optional[list[int]] = field(
        default=None, metadata={"help": "Explicit text-tower interaction layers (0-based, increasing)."}
    )
    vision_layers: Optional[list[int]] = field(
        default=None, metadata={"help": "Explicit vision-tower interaction layers, paired with `text_layers`."}
    )
    translator_hidden_size: Optional[int] = field(
        default=None,
        metadata={
            "help": "Hidden width h of the two Linear-GELU-Linear translators between towers. Default: a third of the "
            "text tower's width (256 on CLIP ViT-L/14), fixed when the adapter is created."
        },
    )
    temperature: float = field(default=0.1, metadata={"help": "Temperature of the cosine-similarity softmax."})
    hub_attention: Literal["gated", "cross"] = field(
        default="gated",
        metadata={
            "help": "'gated': each prompt keeps itself and adds what it reads of the other modality, weighted by how "
            "similar that is; 'cross': adds what it reads, ungated and unnormalized (an ablation). See MemoryHub."
        },
    )
    hub_reads: Literal["prompts", "tokens"] = field(
        default="tokens",
        metadata={
            "help": "What each prompt reads of the other modality in the hub: 'tokens', the other tower's prompt "
            "outputs and its whole token stream at that layer (padding masked), so the text can find the patches "
            "that resemble what it names; 'prompts', the prompt outputs only. No parameters depend on it."
        },
    )
    memory_decay: float = field(
        default=0.0, metadata={"help": "Share of the previous layer's memory carried into the next, in [0, 1)."}
    )
    head_uses_memory: bool = field(
        default=True,
        metadata={
            "help": "Also feed the last hub memory (mean over prompts) to the head: what the hub read from both "
            "towers at the last interaction layer, which pooled features do not carry. False: the head reads pooled "
            "features only."
        },
    )
    missing_modalities: bool = field(
        default=False,
        metadata={
            "help": "Take samples that lack their image or their text (masks image_present / text_present, or "
            "batches without one modality's inputs): a learned prompt per missing type, a hub that does not read an "
            "absent tower, learned placeholders for an absent tower's features in the head. Complete samples are "
            "computed as without it."
        },
    )
    layer_prompts: bool = field(
        default=False,
        metadata={
            "help": "Give each interaction layer its own trainable prompt per tower (zero at the start), added to "
            "the prompts the hub generates: K * prompt_length * (text width + vision width) more parameters."
        },
    )
    head: str = field(
        default="mlp",
        metadata={"help": "The classification head: " + "; ".join(f"'{k}': {h.summary()}" for k, h in HEADS.items())},
    )
    head_hidden_size: Optional[int] = field(
        default=None,
        metadata={
            "help": "Hidden width of the 'mlp' head (the other heads have no hidden layer). Default: a third of the "
            "text tower's width (256 on CLIP ViT-L/14), fixed when the adapter is created."
        },
    )
    zero_shot_template: Optional[str] = field(
        default=None,
        metadata={
            "help": "Set by mitp_peft.init_head_zero_shot: the caption template (e.g. 'a photo of a {}.') whose class "
            "embeddings started the head as the backbone's zero-shot classifier. None: the head started at random."
        },
    )
    prompt_init_std: float = field(default=0.02, metadata={"help": "Std of the Gaussian initial text prompt."})
    num_labels: Optional[int] = field(
        default=None, metadata={"help": "Number of classes (or labels). Required.", "role": DATA}
    )
    problem_type: str = field(
        default="single_label_classification",
        metadata={
            "help": "'single_label_classification' (cross-entropy) or 'multi_label_classification' (BCE).",
            "role": DATA,
        },
    )
    id2label: Optional[dict[int, str]] = field(default=None, metadata={"help": "Class index to name.", "role": LABELS})
    label2id: Optional[dict[str, int]] = field(default=None, metadata={"help": "Class name to index.", "role": LABELS})
    target_modules: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "Filled in when the adapter is created: the interaction layers' module names. Don't set.",
            "role": RECORD,
        },
    )
    built_for: Optional[dict[str, Any]] = field(
        default=None,
        metadata={
            "help": "Filled in when the adapter is created: the backbone it was built for (class, parameters, each "
            "tower's depth and width, image and patch size) and its own parameter count. Loading it onto a "
            "backbone that differs is refused. Don't set.",
            "role": RECORD,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = MITP_PEFT_TYPE
        if self.task_type is not None:
            raise ValueError(
                f"MITPConfig does not take a task_type (got {self.task_type!r}): MITP brings its own classification "
                "head and loss, and peft's task-specific wrappers would pass arguments a dual encoder rejects. "
                "Leave task_type unset."
            )
        if self.target_modules is not None and self.built_for is None:
            raise ValueError(
                f"MITPConfig does not take target_modules (got {self.target_modules!r}): MITP chooses its interaction "
                "layers with num_interaction_layers (the last K layers of each tower) or text_layers and "
                "vision_layers (paired one to one); target_modules is filled in with their module names when the "
                "adapter is created."
            )
        _check_int("prompt_length", self.prompt_length, minimum=1)
        for name in ("translator_hidden_size", "head_hidden_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if self.num_labels is None:
            raise ValueError("MITPConfig needs num_labels, the number of classes (or labels), e.g. num_labels=101.")
        _check_int("num_labels", self.num_labels, minimum=1)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}.")
        if not 0 <= self.memory_decay < 1:
            raise ValueError(f"memory_decay must be in [0, 1), got {self.memory_decay!r}.")
        if not self.prompt_init_std > 0:
            raise ValueError(f"prompt_init_std must be > 0, got {self.prompt_init_std!r}.")
        if self.hub_attention not in HUB_ATTENTIONS:
            raise ValueError(f"hub_attention must be one of {HUB_ATTENTIONS}, got {self.hub_attention!r}.")
        if self.hub_reads not in HUB_READS:
            raise ValueError(f"hub_reads must be one of {HUB_READS}, got {self.hub_reads!r}.")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {self.head!r}.")
        if self.zero_shot_template is not None and "{}" not in self.zero_shot_template:
            raise ValueError(
                f"zero_shot_template must contain '{{}}' where the class name goes, got {self.zero_shot_template!r}."
            )
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}.")
        self._check_layers()
        self._check_labels()
        self.card_info: dict[str, Any] = {}
        """What the adapter's card says about its training (see `mitp_peft.describe_training`); not saved in
        adapter_config.json."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, subfolder: Optional[str] = None, **kwargs: Any):
        """peft's `from_pretrained`; a local folder's weights are checked first (peft reads the config before them,
        on every path that loads an adapter), so a truncated or pickled weights file is named before peft fails on
        it without a name."""
        folder = Path(pretrained_model_name_or_path, subfolder or "")
        if folder.is_dir():
            check_weights(folder)
        return super().from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        """Save adapter_config.json and, for an adapter that was created (`built_for` is filled), its model card as
        README.md.

        peft saves each adapter's config last, after its weights and after peft's own generic README, so this is
        where every adapter folder (Trainer checkpoints included) gets the MITP card. The card is rendered from the
        config alone, so a copy of the model (`copy.deepcopy`) writes the same card.
        """
        super().save_pretrained(save_directory, **kwargs)
        if self.built_for is not None:
            settings = {f.name: getattr(self, f.name) for f in mitp_fields(SETTING, DATA)}
            render_card(self, settings).save(os.path.join(save_directory, "README.md"))

    def _check_layers(self) -> None:
        if self.num_interaction_layers is not None:
            _check_int("num_interaction_layers", self.num_interaction_layers, minimum=1)
        if (self.text_layers is None) != (self.vision_layers is None):
            raise ValueError(
                "Give both text_layers and vision_layers (paired one to one), or neither to use the last "
                "num_interaction_layers layers of each tower."
            )
        if self.text_layers is None:
            return
        self.text_layers = list(self.text_layers)
        self.vision_layers = list(self.vision_layers)
        if len(self.text_layers) != len(self.vision_layers):
            raise ValueError(
                f"text_layers and vision_layers must have the same length (they are paired), got "
                f"{len(self.text_layers)} text layers {self.text_layers} and {len(self.vision_layers)} vision layers "
                f"{self.vision_layers}."
            )
        if not self.text_layers:
            raise ValueError("text_layers and vision_layers must name at least one interaction layer each.")
        if self.num_interaction_layers is not None and self.num_interaction_layers != len(self.text_layers):
            raise ValueError(
                f"num_interaction_layers={self.num_interaction_layers} disagrees with the {len(self.text_layers)} "
                "explicit layer pairs; give one or the other."
            )
        for name in ("text_layers", "vision_layers"):
            layers = getattr(self, name)
            for index in layers:
                _check_int(f"each entry of {name}", index, minimum=0)
            duplicates = sorted({i for i in layers if layers.count(i) > 1})
            if duplicates:
                raise ValueError(f"{name} lists layer(s) {duplicates} more than once: {layers}.")
            if layers != sorted(layers):
                raise ValueError(f"{name} must be increasing (pairs run bottom-up), got {layers}.")

    def _check_labels(self) -> None:
        if self.num_labels == 1 and self.problem_type == "single_label_classification":
            raise ValueError(
                "num_labels=1 with single_label_classification is a softmax over one class: its loss is always 0 and "
                "nothing trains. For a binary task use num_labels=2 (two classes, cross-entropy), or "
                "problem_type='multi_label_classification' with num_labels=1 (one sigmoid, binary cross-entropy)."
            )
        if self.id2label is not None:
            # JSON turns integer keys into strings; restore them, as transformers' configs do.
            self.id2label = {int(k): v for k, v in self.id2label.items()}
            if sorted(self.id2label) != list(range(self.num_labels)):
                raise ValueError(
                    f"id2label must map exactly the indices 0..{self.num_labels - 1} (num_labels={self.num_labels}), "
                    f"got keys {sorted(self.id2label)}."
                )
            names = list(self.id2label.values())
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(
                    f"id2label names {repeated} for more than one class ({self.id2label}): label2id could not tell "
                    "them apart. Give each class its own name."
                )
        if self.label2id is not None:
            self.label2id = {k: int(v) for k, v in self.label2id.items()}
            if self.id2label is not None and self.label2id != {v: k for k, v in self.id2label.items()}:
                raise ValueError("label2id must be the inverse of id2label.")
            if self.id2label is None:
                if sorted(self.label2id.values()) != list(range(self.num_labels)):
                    raise ValueError(
                        f"label2id must map onto exactly 0..{self.num_labels - 1}, "
                        f"got {sorted(self.label2id.values())}."
                    )
                self.id2label = {v: k for k, v in self.label2id.items()}
        if self.id2label is not None and self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def mitp_fields(*roles: str) -> list[Field]:
    """The fields MITPConfig adds to peft's PeftConfig (those of the given roles, or all): the settings of the method,
    documented in their help.

    Each field's `role` (metadata): `setting` (a choice of the method: scripts take it as a flag, the card lists it),
    `data` (taken from the data: the card lists it), `labels` (the label names, from the data: the card shows them
    in a section of their own), `record` (filled in when the adapter is created: never set by hand).
    """
    inherited = {f.name for f in fields(PeftConfig)}
    own = [f for f in fields(MITPConfig) if f.name not in inherited]
    return [f for f in own if not roles or f.metadata.get("role", SETTING) in roles]


def _documented(config: type) -> type:
    """The class with each of its own fields described in its docstring, where `help()` and IDEs show it; the texts
    are the fields' help (`field(metadata={"help": ...})`), which the scripts' flags show too."""
    lines = ["", "", "Args:"]
    for f in mitp_fields():
        lines.append(f"    {f.name} (`{_type_name(f.type)}`, defaults to `{f.default!r}`):")
        lines += textwrap.wrap(f.metadata["help"], width=112, initial_indent=" " * 8, subsequent_indent=" " * 8,
                               break_on_hyphens=False, break_long_words=False)  # fmt: skip
    config.__doc__ = inspect.cleandoc(config.__doc__) + "\n".join(lines)
    return config


def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


_documented(MITPConfig)
