"""One error type for bad pipeline input: it names the field, the value and what is allowed."""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class ConfigError(ValueError):
    """Bad input at the edge (params.yaml, a profile name, a notebook name)."""


def nearest(name: str, allowed: Iterable[str], n: int = 3) -> str:
    """A short 'did you mean' hint followed by every allowed value."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=n, cutoff=0.4)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    return f"{hint}; allowed: {', '.join(allowed)}"


def unknown(field: str, value: Any, allowed: Iterable[str]) -> ConfigError:
    """The error for a value that is not one of ``allowed``."""
    return ConfigError(f"{field}: unknown value {value!r}{nearest(str(value), allowed)}")
