"""nn.Module wrappers of the ops: CMS (SPEC §4)."""
from .cms import CMS, CMSLevel, CMSState

__all__ = ["CMS", "CMSLevel", "CMSState"]
from .titans import SelfModifyingTitans, TitansLayerState  # noqa: E402
from .hope import HopeBlock, HopeBlockState, HopeLM, HopeLMState  # noqa: E402
