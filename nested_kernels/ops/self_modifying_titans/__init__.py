"""``self_modifying_titans`` (SPEC §5): the HOPE core of five self-modifying memories."""
from .api import self_modifying_titans, self_modifying_titans_step
from .state import SelfModifyingTitansState

__all__ = ["self_modifying_titans", "self_modifying_titans_step", "SelfModifyingTitansState"]
