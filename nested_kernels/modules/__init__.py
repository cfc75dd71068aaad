"""nn.Module wrappers of the ops: CMS (SPEC §4)."""
from .cms import CMS, CMSLevel, CMSState

__all__ = ["CMS", "CMSLevel", "CMSState"]
