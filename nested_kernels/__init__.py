"""nested_kernels: GPU kernels for the Nested Learning (HOPE) memories.

Public ops (SPEC.md): ``linear_memory``, ``mlp_memory``, ``fast_mlp``, ``self_modifying_titans``
and their ``*_step`` decode functions with their streaming states; modules ``CMS``,
``SelfModifyingTitans``, ``HopeBlock``, ``HopeLM``.
"""
from .modules import (CMS, CMSLevel, CMSState, HopeBlock, HopeBlockState, HopeLM, HopeLMState,
                      SelfModifyingTitans, TitansLayerState)
from .ops.fast_mlp import FastMLPState, fast_mlp, fast_mlp_step
from .ops.linear_memory import LinearMemoryState, linear_memory, linear_memory_step
from .ops.mlp_memory import MLPMemoryState, mlp_memory, mlp_memory_step
from .ops.self_modifying_titans import (SelfModifyingTitansState, self_modifying_titans,
                                        self_modifying_titans_step)

__version__ = "0.1.0"

__all__ = [
    "linear_memory", "linear_memory_step", "LinearMemoryState",
    "mlp_memory", "mlp_memory_step", "MLPMemoryState",
    "fast_mlp", "fast_mlp_step", "FastMLPState",
    "self_modifying_titans", "self_modifying_titans_step", "SelfModifyingTitansState",
    "CMS", "CMSLevel", "CMSState", "SelfModifyingTitans", "TitansLayerState",
    "HopeBlock", "HopeBlockState", "HopeLM", "HopeLMState",
]
