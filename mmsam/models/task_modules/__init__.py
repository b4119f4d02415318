"""Training helpers: prompt simulation and the interactive training loss."""

from .interactive_training import SAMInteractiveLoss
from .prompt_simulation import (
    PromptSimulator,
    noisy_boxes,
    sample_error_points,
    sample_points_in_masks,
)

__all__ = [
    'PromptSimulator',
    'SAMInteractiveLoss',
    'noisy_boxes',
    'sample_error_points',
    'sample_points_in_masks',
]
