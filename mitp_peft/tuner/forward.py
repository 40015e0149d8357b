"""How MITP takes over the backbone's forward, explicitly and reversibly.

peft calls the backbone itself for methods without a task type, so MITP's joint forward must be the backbone's
forward. It becomes so by giving the backbone instance a subclass of its own class (same name, same module) whose
`forward` is the joint forward, with a signature that names exactly what MITP reads with this backbone. What reads
the class sees the truth: `transformers.Trainer` keeps every input column the towers read (`token_type_ids`, SigLIP 2's
`pixel_attention_mask`, ...), finds `labels` by itself, and passes `num_items_in_batch`.

A backbone whose instance `forward` was already replaced is taken over only where the replacement is known:
accelerate's hooks (`device_map` across devices, offloading) call `module._old_forward` between their pre- and
post-forward, so MITP's forward takes `_old_forward`'s place and the hooks keep running. Any other replacement is
refused, naming it. `uninstall` puts back exactly what was there.
"""

from __future__ import annotations

import inspect
from types import FunctionType, MethodType
from typing import Any

from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from ..method.inputs import input_names
from ..towers import TowerPair

TUNER = "_mitp_tuner"
ORIGINAL_CLASS = "_mitp_original_class"
HOOKED_FORWARD = "_mitp_hooked_forward"
"""The `_old_forward` accelerate's hook called before MITP took its place."""
IGNORED_AT_INFERENCE = "keys_to_ignore_at_inference"
"""The config attribute by which `Trainer.predict` and `evaluate` leave outputs out of their predictions: MITP's
pooled features, so that predictions are the logits, as users of a classifier expect."""
OWN_IGNORED = "_mitp_own_ignored_keys"
# MITP's own arguments besides the towers' inputs.
OWN_ARGUMENTS = ("labels", "num_items_in_batch", "return_dict")


def joint_arguments(towers: TowerPair) -> tuple[str, ...]:
    """The joint forward's parameters with this backbone: the towers' inputs, the cache inputs, labels."""
    return (*input_names(towers), *OWN_ARGUMENTS)


def _forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """MITP's joint forward (see `MITPModel.joint_forward`); with adapters disabled, the backbone's own."""
    return vars(self)[TUNER].joint_forward(*args, **kwargs)


def _generate(self: nn.Module, *args: Any, **kwargs: Any) -> None:
    """PeftModel.generate calls the backbone's: say why there is nothing to generate."""
    raise NotImplementedError(
        "MITP adapters classify (image, text) pairs; there is nothing to generate. Use model(**inputs).logits, or "
        "mitp_peft.predict(model, images, texts) for label names and scores."
    )


def install(model: nn.Module, tuner: BaseTuner, towers: TowerPair) -> None:
    """Make `model`'s forward MITP's joint forward, bound to `tuner` (the `MITPModel`, whose `joint_forward` runs)."""
    state = vars(model)
    if ORIGINAL_CLASS in state:
        state[TUNER] = tuner
        return
    replaced = state.get("forward")
    hooked = replaced is not None and hasattr(model, "_hf_hook") and hasattr(model, "_old_forward")
    if replaced is not None and not hooked:
        raise ValueError(
            f"This {type(model).__name__}'s forward was replaced on the instance ({replaced!r}), by something other "
            "than accelerate's hooks. MITP runs its own joint forward in the backbone's place and cannot tell what "
            "the replacement does: apply it to the PeftModel after get_peft_model, or remove it first "
            "(del model.forward)."
        )
    original = type(model)
    state[TUNER] = tuner
    state[ORIGINAL_CLASS] = original
    state[OWN_IGNORED] = vars(model.config).get(IGNORED_AT_INFERENCE)
    setattr(model.config, IGNORED_AT_INFERENCE, ["image_features", "text_features"])
    model.__class__ = joint_class(original, joint_arguments(towers))
    if hooked:
        state[HOOKED_FORWARD] = model._old_forward
        model._old_forward = MethodType(model.__class__.forward, model)
        # accelerate's wrapper otherwise shows the original's signature
        model.forward.__signature__ = inspect.signature(model._old_forward)


def joint_class(original: type, names: tuple[str, ...]) -> type:
    """The subclass of the backbone's class that MITP gives the backbone instance: `forward` is the joint forward,
    with a signature of exactly `names`, the arguments it reads with this backbone."""
    function = _copy(_forward)
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(name, keyword, default=None) for name in names]
    function.__signature__ = inspect.Signature([inspect.Parameter("self", keyword), *parameters])
    attributes = {
        "forward": function,
        "generate": _generate,
        "__reduce_ex__": _reduce_ex,
        # Trainer passes num_items_in_batch (exact loss scaling under accumulation and DDP) to models that accept it.
        "accepts_loss_kwargs": True,
        "__module__": original.__module__,
        "__qualname__": original.__qualname__,
        "__doc__": original.__doc__,
    }
    return type(original.__name__, (original,), attributes)


def _reduce_ex(self: nn.Module, protocol: int) -> tuple:
    """Pickle the backbone as its own class plus the joint forward's arguments: the subclass itself cannot be found
    by its name (it is made per backbone), so `torch.save(model)` and `copy` rebuild it on loading."""
    names = tuple(inspect.signature(type(self).forward).parameters)[1:]
    return _rebuild, (vars(self)[ORIGINAL_CLASS], names), self.__getstate__()


def _rebuild(original: type, names: tuple[str, ...]) -> nn.Module:
    """An empty backbone instance of MITP's subclass; pickle then restores its state (see `_reduce_ex`)."""
    model = original.__new__(original)
    model.__class__ = joint_class(original, names)
    return model


def tuner_installed_on(model: nn.Module) -> BaseTuner | None:
    """The tuner whose joint forward the backbone runs now, if any."""
    return vars(model).get(TUNER)


def backbone_class(model: nn.Module) -> type:
    """The backbone's own class, also while MITP's subclass stands in for it."""
    return vars(model).get(ORIGINAL_CLASS, type(model))


def backbone_forward(model: nn.Module) -> Any:
    """The forward the backbone had before MITP: what runs with adapters disabled."""
    state = vars(model)
    return state[HOOKED_FORWARD] if HOOKED_FORWARD in state else MethodType(state[ORIGINAL_CLASS].forward, model)


def uninstall(model: nn.Module) -> None:
    """Put back the backbone's class and, behind accelerate's hooks, the forward they called."""
    state = vars(model)
    if ORIGINAL_CLASS not in state:
        return
    model.__class__ = state.pop(ORIGINAL_CLASS)
    del state[TUNER]
    own = state.pop(OWN_IGNORED)
    if own is None:
        delattr(model.config, IGNORED_AT_INFERENCE)
    else:
        setattr(model.config, IGNORED_AT_INFERENCE, own)
    if HOOKED_FORWARD in state:
        model._old_forward = state.pop(HOOKED_FORWARD)
        del model.forward.__signature__


def _copy(function: Any) -> Any:
    """A new function object with the same code, so that each backbone's forward carries its own signature."""
    return FunctionType(
        function.__code__, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )
