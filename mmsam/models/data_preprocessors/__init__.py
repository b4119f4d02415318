"""Data preprocessors registered in mmdet's MODELS registry."""

from .sam_data_preprocessor import SAMDataPreprocessor

__all__ = ['SAMDataPreprocessor']
