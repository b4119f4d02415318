"""Helpers for tests: the official reference model and mmsam's on the same weights."""

from .images import smooth_image
from .parity import (
    TEST_ARCHS,
    build_official_sam,
    build_sam_pair,
    official_to_mmsam,
    randomize_parameters,
    sam_model_cfg,
)

__all__ = [
    'TEST_ARCHS',
    'build_official_sam',
    'build_sam_pair',
    'official_to_mmsam',
    'randomize_parameters',
    'sam_model_cfg',
    'smooth_image',
]
