"""Data transforms that turn annotations into SAM prompts."""

from .box_prompts import BoxPromptsFromGT, DetectorBoxPrompts
from .pack_sam_inputs import PackSAMInputs
from .point_prompts import PointPromptsFromGT

__all__ = ['BoxPromptsFromGT', 'DetectorBoxPrompts', 'PackSAMInputs', 'PointPromptsFromGT']
