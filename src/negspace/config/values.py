"""Option values as typed: comma lists of numbers and the coercion of TOML, CLI and keyword values
to the schema's field types, each refusal one line naming the flag."""

from __future__ import annotations

import math
from typing import Any

from negspace.errors import NegspaceError


def flag(name: str) -> str:
    """The command-line spelling of a field name."""
    return name.replace("_", "-")


def floats(name: str, text: str) -> list[float]:
    """Parses "0.6,0.7" (the CLI and TOML form of a list of floats)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise NegspaceError(f"--{name} expects comma-separated numbers; got {text!r}") from None
    if not values:
        raise NegspaceError(f"--{name} needs at least one number; got {text!r}")
    return values


def coerce(name: str, value: Any, typ: str) -> Any:
    if value is None:
        return None
    base = typ.replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError
            return bool(value)
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base == "float":
            number = float(value)
            if not math.isfinite(number):  # nan and inf pass every range check
                raise ValueError
            return number
        if isinstance(value, list):  # a TOML list of margins or weights
            return ",".join(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise NegspaceError(f"--{flag(name)} expects {base}; got {value!r}") from None
