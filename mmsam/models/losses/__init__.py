"""Training losses."""

from .sam_mask_loss import SAMMaskLoss

__all__ = ['SAMMaskLoss']
