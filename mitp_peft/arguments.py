"""MITPConfig's method settings as a dataclass for `transformers.HfArgumentParser`: scripts never repeat a default."""

from __future__ import annotations

from dataclasses import MISSING, field, make_dataclass
from typing import get_type_hints

from .tuner.config import SETTING, MITPConfig, mitp_fields


def _arguments() -> type:
    hints = get_type_hints(MITPConfig)
    arguments = make_dataclass(
        "MITPArguments",
        [
            (
                f.name,
                hints[f.name],
                field(default=f.default if f.default is not MISSING else None, metadata=f.metadata),
            )
            for f in mitp_fields(SETTING)
        ],
    )
    arguments.__module__ = __name__
    return arguments


MITPArguments = _arguments()
"""MITPConfig's method settings (the fields of role `setting`: everything but what comes from the data or is
recorded by the adapter) as a dataclass for `transformers.HfArgumentParser`, with MITPConfig's defaults and help
texts."""
