"""`MITPModel`: MITP as a peft tuner on a frozen dual encoder."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional, Union

import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from ..method.adapter import MITPAdapter
from ..method.head import MITPOutput
from ..method.inputs import check_input_names
from ..method.loss import as_label_tensor, classification_loss
from ..method.mixed import fan_out, mixed_forward
from ..towers import TowerPair, activations
from ..version import __version__
from . import forward
from .config import MITPConfig
from .layer import MERGE_REFUSAL, MITPLayer
from .loading import check_fills_adapter
from .peft_type import MITP_PREFIX
from .placement import place

# The tuner's container of MITPAdapter modules, one per adapter name.
ADAPTERS = f"{MITP_PREFIX}adapters"
# Arguments PeftModel strips before calling the backbone, besides adapter_names (PeftModel.special_peft_forward_args).
PEFT_ONLY_ARGUMENTS = ("alora_offsets",)


class MITPModel(BaseTuner):
    """Memory-Inspired Temporal Prompt Interaction on a frozen dual encoder (e.g. `CLIPModel`).

    Created by `peft.get_peft_model(model, MITPConfig(...))`. The backbone stays frozen and untouched; interaction
    layers are wrapped by `MITPLayer`, and each adapter's trainable state is one `MITPAdapter` in `mitp_adapters`,
    keyed by adapter name.

    The backbone's forward becomes the joint MITP forward (both towers interleaved layer by layer, see
    `mitp_peft.tuner.forward`), because peft calls the backbone directly for methods without a task type. With adapters
    disabled it is the backbone's own forward; `unload()` gives the backbone back as it was.
    """

    prefix: str = MITP_PREFIX
    tuner_layer_cls = MITPLayer
    target_module_mapping: dict[str, list[str]] = {}
    # Each adapter's prompts, hub and head live on the tuner, not in the injected layers.
    uses_shared_state = True

    # ------------------------------------------------------------------------------------------------- creation

    def __init__(self, model: nn.Module, peft_config: Any, adapter_name: str, **kwargs: Any) -> None:
        # Before peft's own __init__, which shares the backbone's peft_config dict and would overwrite its entries.
        refuse_adapted(model)
        super().__init__(model, peft_config, adapter_name, **kwargs)

    def inject_adapter(
        self,
        model: nn.Module,
        adapter_name: str,
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
        state_dict: Optional[dict[str, torch.Tensor]] = None,
    ) -> None:
        """Check the config against the backbone, create the adapter's module, wrap its layers.

        Overridden rather than done in `_pre_injection_hook`, which peft calls for the first adapter only.
        """
        config: MITPConfig = self.peft_config[adapter_name]
        towers, built_for = place(model, config)
        if config.built_for is None:
            # peft names the backbone in the first adapter's config only; a local one named relative to where this
            # process runs is recorded where it is, for any process.
            path = config.base_model_name_or_path or getattr(model, "name_or_path", None) or None
            config.base_model_name_or_path = os.path.abspath(path) if path and os.path.isdir(path) else path
        if not hasattr(self, "mitp_adapters"):
            self.mitp_adapters = nn.ModuleDict()
        self.towers: TowerPair = towers
        """The backbone's two tower adapters (how MITP embeds, runs and pools each tower)."""
        adapter = MITPAdapter(config, towers, device=next(model.parameters()).device)
        self.mitp_adapters[adapter_name] = adapter
        config.built_for = dict(built_for, adapter_parameters=adapter.num_parameters, mitp_peft_version=__version__)
        try:
            super().inject_adapter(
                model,
                adapter_name,
                autocast_adapter_dtype=autocast_adapter_dtype,
                low_cpu_mem_usage=low_cpu_mem_usage,
                state_dict=state_dict,
            )
        except Exception:
            if adapter_name in self.mitp_adapters:
                del self.mitp_adapters[adapter_name]
            raise
        forward.install(model, self, towers)
        for tower in towers:
            activations.make_lean(tower.layers)  # the same outputs, half the activations kept for the backward

    def _prepare_adapter_config(self, peft_config: MITPConfig, model_config: dict) -> MITPConfig:
        text, vision = self.towers
        peft_config.target_modules = [f"{text.layers_path}.{i}" for i in peft_config.text_layers] + [
            f"{vision.layers_path}.{i}" for i in peft_config.vision_layers
        ]
        return peft_config

    @staticmethod
    def _check_target_module_exists(peft_config: MITPConfig, key: str) -> bool:
        return key in peft_config.target_modules

    def _create_and_replace(
        self,
        peft_config: MITPConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        if not isinstance(target, MITPLayer):
            wrapped = MITPLayer(target)
            self._replace_module(parent, target_name, wrapped, target)
            target = wrapped
        target.update_layer(adapter_name)

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        # A whole encoder layer is (un)wrapped: there is no single `.weight` to rebind as in LoRA, and the
        # wrapper holds no weights to move.
        setattr(parent, child_name, new_module)

    # -------------------------------------------------------------------------------------------------- forward

    def joint_forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        pixel_values: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        *args: Any,
        labels: Optional[torch.Tensor] = None,
        num_items_in_batch: Optional[Union[int, torch.Tensor]] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[MITPOutput, tuple]:
        """Classify (image, text) pairs with the active MITP adapter; with adapters disabled, the backbone's forward.

        The backbone's forward (see `mitp_peft.tuner.forward`). Takes what the towers read (e.g. `token_type_ids`,
        `position_ids`, `interpolate_pos_encoding`), and states cached by `mitp_peft.extraction` in place of the
        embeddings and extraction layers. `labels` gives `loss`; `num_items_in_batch` (passed by `Trainer`) makes the
        loss exact under gradient accumulation and DDP, see `classification_loss`.
        """
        inputs = dict(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
        if not self._mitp_enabled():
            if labels is not None and not self.mitp_adapters:
                raise ValueError(
                    "This model has no MITP adapter left (the last one was deleted): it is the backbone itself, which "
                    "has no classification head, so labels cannot give a loss. Add an adapter with "
                    "model.add_adapter(name, MITPConfig(...)) (or load_adapter)."
                )
            if labels is not None:
                raise ValueError(
                    "With adapters disabled (model.disable_adapter()) the model is the backbone itself, which has no "
                    "classification head: labels cannot give a loss there. Call it without labels for the "
                    "backbone's own outputs, or outside disable_adapter() for MITP's loss."
                )
            own = {} if return_dict is None else {"return_dict": return_dict}
            return forward.backbone_forward(self.model)(*args, **inputs, **own, **kwargs)
        if args:
            raise TypeError(
                "MITP's forward takes input_ids, pixel_values and attention_mask by position and the rest by name; "
                f"got {len(args)} more positional argument(s)."
            )
        check_input_names(kwargs, self.towers)
        inputs.update(kwargs)
        names = self._call_adapter_names
        if names is None:
            config = self.peft_config[self.active_adapter_name]
            adapter = self.mitp_adapters[self.active_adapter_name]
            logits, features = adapter(self.towers, adapter.batch(self.towers, inputs))
            image_features, text_features = features.image_features, features.text_features
        else:
            logits, image_features, text_features = mixed_forward(
                self.towers, self.mitp_adapters, self.peft_config, inputs, names
            )
            config = self.peft_config[names[0]]  # checked by mixed_forward: every adapter shares one label space
        if labels is not None and not torch.is_tensor(labels):
            labels = as_label_tensor(labels, config.label2id)
        loss = None
        if labels is not None:
            loss = classification_loss(logits, labels, config.problem_type, num_items_in_batch)
        output = MITPOutput(loss=loss, logits=logits, image_features=image_features, text_features=text_features)
        return output if return_dict is not False else output.to_tuple()

    def fan_out(
        self,
        adapters: Sequence[str],
        input_ids: Optional[torch.Tensor] = None,
        pixel_values: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> dict[str, MITPOutput]:
        """Every named adapter's output for the whole batch, in one call: {adapter name: MITPOutput}.

        For several adapters asked about the same pairs (several tasks on one photo and caption, or the same request
        to every customer's adapter): the layers below the interaction layers run once, each adapter only its
        interaction layers, the layers above and its head. Each output equals what its adapter gives alone
        (`set_adapter(name)`, then the model). Takes the forward's inputs, complete pairs only, without labels.
        """
        inputs = dict(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
        check_input_names(kwargs, self.towers)
        inputs.update(kwargs)
        outputs = fan_out(self.towers, self.mitp_adapters, self.peft_config, inputs, adapters)
        return {
            name: MITPOutput(
                logits=logits, image_features=features.image_features, text_features=features.text_features
            )
            for name, (logits, features) in outputs.items()
        }

    _call_adapter_names: Optional[list[str]] = None
    """The per-sample adapters of the call in progress (`adapter_names`), None for the active adapter alone."""

    @contextmanager
    def _enable_peft_forward_hooks(
        self, *args: Any, adapter_names: Optional[Sequence[str]] = None, **kwargs: Any
    ) -> Iterator[None]:
        """Take the arguments peft strips before calling the backbone: `adapter_names` makes a mixed-adapter batch
        (see `mitp_peft.method.mixed`); the others are refused rather than ignored."""
        dropped = sorted(name for name in PEFT_ONLY_ARGUMENTS if kwargs.get(name) is not None)
        if dropped:
            raise TypeError(f"MITP takes no {dropped}: they belong to other peft methods (aLoRA).")
        if adapter_names is None:
            yield
            return
        if isinstance(adapter_names, str):
            raise TypeError(
                f"adapter_names takes one adapter name per sample, a list, got the string {adapter_names!r}. For one "
                f"adapter on the whole batch call model.set_adapter({adapter_names!r}) and leave adapter_names out; "
                f"for a mixed batch pass e.g. adapter_names=[{adapter_names!r}] * batch_size."
            )
        if self.training:
            raise ValueError(
                "Mixed-adapter batches (adapter_names) are for inference: call model.eval() first. Train each "
                "adapter on its own batches (set_adapter(name)), as peft does for LoRA."
            )
        self._call_adapter_names = list(adapter_names)
        try:
            yield
        finally:
            self._call_adapter_names = None

    def _mitp_enabled(self) -> bool:
        # peft enables and disables all tuner layers together; the active adapter's first layer stands for all.
        if not self.active_adapters:
            return False
        first_text_layer = self.peft_config[self.active_adapters[0]].text_layers[0]
        return not self.towers.text.layers[first_text_layer].disable_adapters

    @property
    def active_adapter_name(self) -> str:
        """The one active adapter's name (MITP runs one adapter at a time)."""
        if not self.mitp_adapters:
            raise ValueError(
                "This model has no MITP adapter (the last one was deleted): add one with model.add_adapter(name, "
                "MITPConfig(...)) or model.load_adapter(path, adapter_name=name)."
            )
        if len(self.active_adapters) != 1:
            raise ValueError(
                f"MITP runs one adapter at a time, but {self.active_adapters} are active; call set_adapter(name)."
            )
        return self.active_adapters[0]

    @property
    def max_text_length(self) -> Optional[int]:
        """The longest text (in tokens) that fits next to the active adapter's prompts; tokenize with this."""
        return self.text_room([self.active_adapter_name])

    def text_room(self, adapters: Sequence[str]) -> Optional[int]:
        """The longest text (in tokens) that fits next to the prompts of each of `adapters` (None: no limit)."""
        return self.towers.text.room(max(self.mitp_adapters[name].prompt_length for name in adapters))

    # ----------------------------------------------------------------------------------- adapters and training

    def _sync_trainability(self, trainable: Sequence[str]) -> None:
        """Only the named adapters' modules train; peft's own helpers only look at the tuner layers."""
        for name, adapter in self.mitp_adapters.items():
            adapter.requires_grad_(name in trainable)

    def _trainable_active_adapters(self) -> list[str]:
        return [a for a in self.active_adapters if not self.peft_config[a].inference_mode]

    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        super()._mark_only_adapters_as_trainable(model)
        self._sync_trainability(self._trainable_active_adapters())

    def set_adapter(self, adapter_name: Union[str, list[str]], inference_mode: bool = False) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        missing = [n for n in names if n not in self.peft_config]
        if missing:
            raise ValueError(f"Adapter(s) {missing} not found; available: {sorted(self.peft_config)}.")
        if len(names) > 1:
            raise ValueError(f"MITP runs one adapter at a time; got {names}.")
        super().set_adapter(names, inference_mode=inference_mode)
        self._sync_trainability([] if inference_mode else names)

    def set_requires_grad(self, adapter_names: Union[str, Sequence[str]], requires_grad: bool = True) -> None:
        for name in [adapter_names] if isinstance(adapter_names, str) else adapter_names:
            self.mitp_adapters[name].requires_grad_(requires_grad)

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        super()._enable_adapter_layers(enabled)
        self._sync_trainability(self._trainable_active_adapters() if enabled else [])

    def delete_adapter(self, adapter_name: str) -> None:
        """Delete an adapter; deleting the last one leaves no adapter active and the backbone's own forward, as peft
        does for its own methods (`unload()` also removes the layer wrappers)."""
        super().delete_adapter(adapter_name)
        del self.mitp_adapters[adapter_name]
        self._sync_trainability(self._trainable_active_adapters())

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        """MITP's weights are created in float32; without autocast they follow the backbone's dtype instead."""
        if not autocast_adapter_dtype:
            self.mitp_adapters[adapter_name].to(self.towers.text.model.dtype)

    # --------------------------------------------------------------------------------------- merge and unload

    def _check_merge_allowed(self) -> None:
        raise NotImplementedError(MERGE_REFUSAL)

    def add_weighted_adapter(self, *args: Any, **kwargs: Any) -> None:
        """peft's weighted combination of LoRA-like adapters: refused, naming why."""
        raise NotImplementedError(
            "MITP adapters cannot be combined with add_weighted_adapter: it sums weight deltas of LoRA-like adapters, "
            "and an MITP adapter is prompts, a memory hub and a head, whose weighted sum is no adapter at all. Load "
            "each adapter (load_adapter) and choose per call (set_adapter, or adapter_names for mixed batches)."
        )

    def _unload_and_optionally_merge(self, merge: bool = True, **kwargs: Any) -> nn.Module:
        if merge:
            self._check_merge_allowed()
        forward.uninstall(self.model)
        activations.restore(self.model)
        return super()._unload_and_optionally_merge(merge=False, **kwargs)

    # ------------------------------------------------------------------------------------------- state dicts

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        """`base_model.mitp_adapters.<adapter>.hub.translate_text_to_vision.0.weight` -> `...mitp_adapters.hub...`.

        peft's default only removes the adapter name as the last or second-to-last key component; the adapter's
        module nests deeper.
        """
        return key.replace(f"{ADAPTERS}.{adapter_name}.", f"{ADAPTERS}.")

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls, model: nn.Module, config: MITPConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Map checkpoint keys to this model, refusing weights that do not fill exactly this adapter's tensors (see
        `check_fills_adapter`)."""
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        plain = lambda key: cls._remove_adapter_name_from_key(key, adapter_name)  # noqa: E731
        check_fills_adapter(remapped, model.state_dict(), f"{ADAPTERS}.{adapter_name}.", plain)
        return remapped


def refuse_adapted(model: nn.Module) -> None:
    """A new MITP tuner needs a plain backbone: refuse one that already carries adapters, naming the way to add one."""
    if isinstance(model, (PeftModel, BaseTuner)):
        raise ValueError(
            "This model already carries peft adapters. Add another MITP adapter with "
            "model.add_adapter(name, MITPConfig(...)), or call get_peft_model on the plain backbone."
        )
    if forward.tuner_installed_on(model) is not None:
        raise ValueError(
            "This backbone already carries an MITP adapter from an earlier get_peft_model (or "
            "PeftModel.from_pretrained): a second one would take over its forward, and the first PeftModel would "
            "silently run the new adapter. Add the adapter to the first model with model.add_adapter(name, "
            "MITPConfig(...)) (or model.load_adapter(path, adapter_name=name)), or give get_peft_model a fresh copy "
            "of the backbone (unload() the first one to get it back)."
        )


def tuner_of(model: nn.Module) -> MITPModel:
    """The MITPModel of a PeftModel (or the MITPModel itself)."""
    tuner = getattr(model, "base_model", None) if not isinstance(model, MITPModel) else model
    if not isinstance(tuner, MITPModel):
        raise TypeError(f"Expected a PeftModel with an MITP adapter (or an MITPModel), got {type(model).__name__}.")
    return tuner
