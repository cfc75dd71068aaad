"""``linear_memory`` (SPEC §2): chunked linear memory with DGD, retention and momentum."""
from .api import linear_memory, linear_memory_step
from .state import LinearMemoryState

__all__ = ["linear_memory", "linear_memory_step", "LinearMemoryState"]
