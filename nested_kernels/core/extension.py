"""The compiled CUDA extension ``nested_kernels._C``, loaded on first use.

Importing the package never needs it; a CUDA backend that is called without it raises an error
that says how to build it.
"""
from __future__ import annotations

import functools
from types import ModuleType
from typing import Optional

import torch

BUILD_HINT = (
    "the CUDA extension nested_kernels._C is not built. Build it with a CUDA compiler (nvcc) on PATH: "
    "`pip install --no-build-isolation -e .` (NESTED_KERNELS_CUDA=1 makes a missing nvcc an error, "
    "NESTED_KERNELS_CUDA_ARCHS='80;90a' picks the architectures); see README.md, 'Building CUDA'."
)


@functools.lru_cache(maxsize=None)
def _load() -> tuple[Optional[ModuleType], Optional[str]]:
    try:
        from nested_kernels import _C  # type: ignore[attr-defined]
    except ImportError as exc:  # not built, or built for another Python
        return None, f"{BUILD_HINT} (import failed: {exc})"
    return _C, None


def cuda_extension() -> ModuleType:
    """The loaded extension; raises RuntimeError with build instructions when it is missing."""
    module, why = _load()
    if module is None:
        raise RuntimeError(why)
    return module


def cuda_extension_unavailable_reason() -> Optional[str]:
    """None when the extension is importable, else why not."""
    return _load()[1]


def sm90_unavailable_reason(t: torch.Tensor, what: str) -> Optional[str]:
    """Why ``what`` (kernels of the extension that run on sm_90 only, e.g. "the CUDA walk") cannot
    run on tensor ``t``'s device: not a CUDA tensor, the extension missing, or an older GPU; None
    when it can."""
    if t.device.type != "cuda":
        return f"{what} needs CUDA tensors (got {t.device})"
    why = cuda_extension_unavailable_reason()
    if why is not None:
        return why
    capability = torch.cuda.get_device_capability(t.device)
    if capability < (9, 0):
        return f"{what} needs an sm_90 GPU"
    archs = cuda_extension().build_info()["cuda_archs"]    # "unknown": not built by setup.py, cannot tell
    if archs != "unknown" and not any(runs_on(arch, capability) for arch in archs.split(";") if arch[:1] == "9"):
        return (f"{what}: the extension was built for sm_{archs.replace(';', ', sm_')}, which has "
                f"no sm_9x code this GPU (sm_{capability[0]}{capability[1]}) runs; rebuild with "
                f"NESTED_KERNELS_CUDA_ARCHS naming it")
    return None


def runs_on(arch: str, capability: tuple[int, int]) -> bool:
    """Whether machine code built for ``arch`` (a NESTED_KERNELS_CUDA_ARCHS entry such as "90a",
    "90" or "80") runs on a GPU of compute ``capability``: "90a" only on 9.0 itself (arch-specific),
    "90" and "100f" (family) on the same major version from that minor on."""
    digits = arch.rstrip("af")
    major, minor = int(digits[:-1]), int(digits[-1])
    if arch.endswith("a"):
        return capability == (major, minor)
    return capability[0] == major and capability[1] >= minor


_DTYPE_CODE_NAMES = {torch.float32: "DTYPE_FLOAT32", torch.bfloat16: "DTYPE_BFLOAT16",
                     torch.float16: "DTYPE_FLOAT16"}


def dtype_code(dtype) -> int:
    """The extension's element-type code (``_C.DTYPE_*``, csrc/common/dtypes.h) of a torch dtype
    (float32, bfloat16 or float16); a KeyError for any other."""
    return getattr(cuda_extension(), _DTYPE_CODE_NAMES[dtype])

