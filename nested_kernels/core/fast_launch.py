"""Triton launches without ``JITFunction.run``'s per-call work.

``launch(kernel, grid, *args, **kwargs)`` does what ``kernel[grid](*args, **kwargs)`` does. The
first call of a signature goes through Triton (binding, specialization, compilation, launch) and
keeps the compiled kernel Triton launched; later calls of that signature hand their arguments to
the compiled kernel's launcher directly. The H100 machine's host spent 70–160 µs in each
``JITFunction.run`` of linear_memory's kernels (2026-12-07e, ``python python/profile_kernels.py
linear_memory --gates "" --marks 20``), on the path of every synced call.

The signature holds more than Triton specializes on, so a kept kernel is always the one Triton
would pick: per positional argument its type, and for tensors their dtype and whether the data
pointer is 16-byte aligned, for ints and bools their value (floats are never specialized); every
keyword argument (constexprs, num_warps, ptxas options) by value; the current device and
DISABLE_MMA_V3 (``triton_launch.mma_sync``); not Triton's own debug settings (TRITON_DEBUG and
the like), which must not change after a kernel's first launch. Arguments of other types (tensor
descriptors) always take Triton's path.

On by default; NESTED_KERNELS_FAST_LAUNCH=0 turns it off (H100 2026-12-07f: its GPU test and
linear_memory's pass with it, ≈ 20 / 50 µs less per synced forward / forward + backward at issue
3's shape; 2026-12-07g: the quick verify of mlp_memory, fast_mlp and the three decode steps' Triton
backends, 15 / 15). Off — every launch through Triton — under the interpreter, while Triton's
launch hooks are set (profilers such as proton read them), and for callables other than
``@triton.jit`` functions (the tests' launch spies).
"""
from __future__ import annotations

import functools

import torch

from .env import getenv
from .triton_launch import env_flag, interpreting

_KEPT: dict = {}
_MAX_KEPT = 4096


def _arg_key(a):
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if a is None or isinstance(a, (bool, int)):
        return a if type(a) is not bool else ("b", a)
    if isinstance(a, float):
        return float
    raise TypeError(type(a).__name__)


def _key(kernel, device: int, args, kwargs):
    """The signature of a launch (module docstring), or None where a positional argument is not one
    of the kinds it covers or a keyword argument is a tensor (an unhashable keyword value makes
    ``launch`` take Triton's path when it looks the signature up)."""
    kw = tuple(kwargs.items())
    if any(isinstance(v, torch.Tensor) for _, v in kw):      # a tensor by keyword: Triton's path
        return None
    try:
        return kernel, device, getenv("DISABLE_MMA_V3"), tuple(_arg_key(a) for a in args), kw
    except TypeError:
        return None


@functools.lru_cache(maxsize=None)
def _runtime() -> tuple:
    """(JITFunction, Triton's runtime knobs, which hold the launch hooks)."""
    from triton import knobs
    from triton.runtime.jit import JITFunction
    return JITFunction, knobs.runtime


@functools.lru_cache(maxsize=None)
def _driver():
    """(current device, current raw stream of a device): the functions ``JITFunction.run`` calls."""
    from triton.runtime import driver
    return driver.active.get_current_device, driver.active.get_current_stream


def enabled() -> bool:
    """Whether ``launch`` may skip Triton's path (module docstring)."""
    if not env_flag("NESTED_KERNELS_FAST_LAUNCH", True) or interpreting():     # off: one read
        return False
    runtime = _runtime()[1]     # a hook is None, a function, or (Triton 3.6) a HookChain of ``calls``
    return not any(getattr(h, "calls", h) for h in (runtime.launch_enter_hook, runtime.launch_exit_hook))


def launch(kernel, grid: tuple, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)`` for a ``@triton.jit`` kernel and a tuple grid."""
    if not (enabled() and isinstance(kernel, _runtime()[0])):
        kernel[grid](*args, **kwargs)
        return
    current_device, current_stream = _driver()
    device = current_device()
    key = _key(kernel, device, args, kwargs)
    try:
        kept = _KEPT.get(key) if key is not None else None
    except TypeError:       # an unhashable keyword value
        key = kept = None
    if kept is None:
        compiled = kernel[grid](*args, **kwargs)
        if key is not None and compiled is not None:
            if len(_KEPT) >= _MAX_KEPT:
                _KEPT.clear()
            tail = kernel.params[len(args):]
            _KEPT[key] = (compiled, tuple(p.name for p in tail),
                          {p.name: p.default for p in tail if p.has_default})
        return
    compiled, tail, defaults = kept
    g0, g1, g2 = (tuple(grid) + (1, 1))[:3]
    compiled.run(g0, g1, g2, current_stream(device), compiled.function,
                 compiled.packed_metadata, None, None, None,
                 *args, *[kwargs[n] if n in kwargs else defaults[n] for n in tail])
