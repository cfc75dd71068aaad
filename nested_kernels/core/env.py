"""Environment reads for the tuning knobs, which the backends read at every call.

``getenv(name, default=None)`` equals ``os.environ.get(name, default)`` (it sees every change made
through ``os.environ``) at a fifth of the cost: ``os.environ.get`` encodes the key and walks two
Python mapping layers on each read (~1 µs), and one linear_memory forward + backward reads ~75
knobs (H100 host, 2026-11-26f: ~0.1 ms of its ~1.2 ms host time). The lookup goes straight to
``os.environ``'s own dictionary, with the encoded keys cached; where that dictionary is not there
(not CPython), it falls back to ``os.environ.get``.

``knob_snapshot()`` / ``frozen_knobs(pairs)``: the ``NESTED_KERNELS_*`` variables of a call
through the registered op travel in its config (core.custom_op), and its forward, fake forward
and backward read them from there, not from the environment. The config string keys
torch.compile's graph caches, so a graph traced under one knob value (a residual size that
depends on it, say) is never served to a call under another, and the fake and the real kernels
of one call always see the same knobs. ``knob_key()``: the same snapshot, formed again only when
the environment or the frozen knobs changed (a key for caches of what the knobs decide).
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Iterator, Optional, Sequence

_DATA = getattr(os.environ, "_data", None)
_ENCODE = getattr(os.environ, "encodekey", None)
_DECODE = getattr(os.environ, "decodevalue", None)


@functools.lru_cache(maxsize=None)
def _key(name: str):
    return _ENCODE(name)


KNOB_PREFIX = "NESTED_KERNELS_"


class _Frozen(threading.local):
    """``knobs``: the dict of the innermost ``frozen_knobs`` of this thread, or None. (A thread-local
    with a class default: reading it costs ~50 ns, a missing attribute's ``getattr`` default ~300;
    torch.compile traces ``getenv``, and it cannot trace a ContextVar.)"""
    knobs: Optional[dict] = None


_FROZEN = _Frozen()


def knob_snapshot(prefix: str = KNOB_PREFIX) -> tuple:
    """The knobs ``getenv`` sees now whose names start with ``prefix`` (the environment's, or the
    frozen set inside ``frozen_knobs``), as sorted (name, value) pairs."""
    frozen = _FROZEN.knobs
    items = os.environ.items() if frozen is None else frozen.items()
    return tuple(sorted((k, v) for k, v in items if k.startswith(prefix)))


def knob_key() -> tuple:
    """``knob_snapshot()``, as a cache key for what the knobs decide: formed again only when the
    environment or the frozen knobs changed since the last call, else (two dictionary comparisons)
    the same tuple. Not for code that torch.compile traces (it keeps a module global)."""
    global _LAST
    frozen, env, last = _FROZEN.knobs, os.environ if _DATA is None else _DATA, _LAST
    if last[0] == frozen and last[1] == env:
        return last[2]
    copy = dict(env)    # taken first: a change during the snapshot only makes the next call form it again
    _LAST = (frozen, copy, knob_snapshot())
    return _LAST[2]


# knob_key's last answer: (frozen knobs, a copy of the environment's dictionary, knob_snapshot())
_LAST: tuple = (None, None, ())


@contextlib.contextmanager
def frozen_knobs(pairs: Optional[Sequence]) -> Iterator[None]:
    """While open, ``getenv`` answers ``NESTED_KERNELS_*`` names from ``pairs`` (a
    ``knob_snapshot``, or its JSON form: lists of two) instead of the environment; None changes
    nothing."""
    if pairs is None:
        yield
        return
    outer = _FROZEN.knobs
    _FROZEN.knobs = dict(pairs)
    try:
        yield
    finally:
        _FROZEN.knobs = outer


def getenv(name: str, default: Optional[str] = None) -> Optional[str]:
    """``os.environ.get(name, default)``, or the frozen value of a knob (``frozen_knobs``)."""
    frozen = _FROZEN.knobs
    if frozen is not None and name.startswith(KNOB_PREFIX):
        return frozen.get(name, default)
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
