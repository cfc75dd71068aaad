"""nested_kernels: GPU kernels for the Nested Learning (HOPE) memories.

Public ops (SPEC.md): ``linear_memory``, ``mlp_memory``, ``fast_mlp``, ``self_modifying_titans``
and their ``*_step`` decode functions; modules ``CMS``, ``SelfModifyingTitans``, ``HopeBlock``.
"""
from .ops.linear_memory import LinearMemoryState, linear_memory, linear_memory_step

__version__ = "0.1.0"
