"""MITP's name and state-dict prefix in peft's method tables."""

from __future__ import annotations

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
