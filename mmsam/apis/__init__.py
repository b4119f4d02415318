"""User-facing APIs: interactive prediction, automatic mask generation, SA-1B files."""

from .predictor import SAMPredictor

__all__ = ['SAMPredictor']
