"""``mlp_memory`` (SPEC §3): chunked 2-layer MLP ("deep") memory with DGD, retention and momentum."""
from .api import mlp_memory, mlp_memory_step
from .state import MLPMemoryState

__all__ = ["mlp_memory", "mlp_memory_step", "MLPMemoryState"]
