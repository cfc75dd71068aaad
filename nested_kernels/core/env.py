"""Environment reads for the tuning knobs, which the backends read at every call.

``getenv(name, default=None)`` equals ``os.environ.get(name, default)`` (it sees every change made
through ``os.environ``) at a fifth of the cost: ``os.environ.get`` encodes the key and walks two
Python mapping layers on each read (~1 µs), and one linear_memory forward + backward reads ~75
knobs (H100 host, 2026-11-26f: ~0.1 ms of its ~1.2 ms host time). The lookup goes straight to
``os.environ``'s own dictionary, with the encoded keys cached; where that dictionary is not there
(not CPython), it falls back to ``os.environ.get``.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

_DATA = getattr(os.environ, "_data", None)
_ENCODE = getattr(os.environ, "encodekey", None)
_DECODE = getattr(os.environ, "decodevalue", None)


@functools.lru_cache(maxsize=None)
def _key(name: str):
    return _ENCODE(name)


def getenv(name: str, default: Optional[str] = None) -> Optional[str]:
    """``os.environ.get(name, default)``."""
    if _DATA is None or _ENCODE is None or _DECODE is None:
        return os.environ.get(name, default)
    value = _DATA.get(_key(name))
    return default if value is None else _DECODE(value)


def env_choice(name: str, default: str, choices: tuple) -> str:
    """The value of the knob ``name`` (``default`` when unset), one of ``choices``; anything else
    is a ValueError naming the variable."""
    value = getenv(name, default)
    if value not in choices:
        raise ValueError(f"{name} must be {' or '.join(choices)}, got {value!r}")
    return value
