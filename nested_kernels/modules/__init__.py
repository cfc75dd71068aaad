"""nn.Module wrappers of the ops: CMS (SPEC §4), the self-modifying Titans layer and HOPE (SPEC §5)."""
from .cms import CMS, CMSLevel, CMSState
from .hope import HopeBlock, HopeBlockState, HopeLM, HopeLMState
from .titans import SelfModifyingTitans, TitansLayerState

__all__ = ["CMS", "CMSLevel", "CMSState", "SelfModifyingTitans", "TitansLayerState",
           "HopeBlock", "HopeBlockState", "HopeLM", "HopeLMState"]
