"""Registers MITP with peft's method tables.

peft's own `register_peft_method` refuses names that are not members of its closed `PeftType` enum, so a third-party
method cannot use it. We write into the same four tables it fills (they are shared dict objects that every part of
peft imports), after making the checks it makes: the name and the prefix must be free, and the tuner's prefix must
be the one registered. Registration is idempotent, so importing `mitp_peft` twice (or reloading it) is harmless.
"""

from __future__ import annotations

from peft import mapping
from peft.utils.peft_types import PeftType

MITP_PREFIX = "mitp_"


class ExternalPeftType(str):
    """A `str` that quacks like a `PeftType` member.

    peft uses `peft_type.value` / `.name` in a few messages and reads `str(peft_type)` as "PeftType.<NAME>" in
    `get_model_status`; a plain string would break those. It serialises to JSON as the bare string and hashes like
    it, so every dict lookup keyed by "MITP" works.
    """

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def name(self) -> str:
        return self.value

    def __str__(self) -> str:
        return f"PeftType.{self.value}"


MITP_PEFT_TYPE = ExternalPeftType("MITP")


def register() -> None:
    """Make "MITP" known to peft: config class, tuner class and state-dict prefix."""
    from .config import MITPConfig
    from .model import MITPModel

    if MITP_PEFT_TYPE in PeftType.__members__:
        raise RuntimeError(
            "peft now ships its own 'MITP' method (PeftType.MITP); mitp_peft would shadow it. "
            "Use peft's built-in MITP or pin peft<0.22 as mitp_peft's requirements say."
        )
    if MITPModel.prefix != MITP_PREFIX:
        raise RuntimeError(f"MITPModel.prefix is {MITPModel.prefix!r}, expected {MITP_PREFIX!r}.")

    registered = {
        "config": (mapping.PEFT_TYPE_TO_CONFIG_MAPPING, MITPConfig),
        "tuner": (mapping.PEFT_TYPE_TO_TUNER_MAPPING, MITPModel),
        "prefix": (mapping.PEFT_TYPE_TO_PREFIX_MAPPING, MITP_PREFIX),
    }
    for what, (table, ours) in registered.items():
        theirs = table.get(MITP_PEFT_TYPE)
        # Compare by qualified name, not identity: reloading the module creates new class objects.
        if theirs is not None and _qualname(theirs) != _qualname(ours):
            raise RuntimeError(f"The peft method name 'MITP' is already registered with another {what}: {theirs!r}.")

    for peft_type, prefix in mapping.PEFT_TYPE_TO_PREFIX_MAPPING.items():
        if prefix == MITP_PREFIX and peft_type != MITP_PEFT_TYPE:
            raise RuntimeError(f"The adapter prefix {MITP_PREFIX!r} is already used by the peft method {peft_type!s}.")

    for table, ours in registered.values():
        table[MITP_PEFT_TYPE] = ours


def _qualname(obj: object) -> str:
    if isinstance(obj, str):
        return obj
    return f"{obj.__module__}.{obj.__qualname__}"
