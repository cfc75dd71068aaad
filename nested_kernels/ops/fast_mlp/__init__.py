"""``fast_mlp`` (SPEC §4): fast-weight MLP updated once per chunk, one level of a CMS."""
from .api import fast_mlp, fast_mlp_step
from .dual import release_graphs
from .state import FastMLPState

__all__ = ["fast_mlp", "fast_mlp_step", "FastMLPState", "release_graphs"]
