"""Datasets and transforms for evaluating SAM on COCO-style annotations.

Importing ``mmsam.datasets`` registers them in mmdet's ``DATASETS`` and ``TRANSFORMS``.
"""

from .annotation_audit import (
    DROP_REASONS,
    AnnotationFileError,
    NoInstancesError,
    classify_annotation,
)
from .sam_coco import PromptDatasetMixin, SAMCocoDataset, SAMLVISV1Dataset
from .transforms import BoxPromptsFromGT, DetectorBoxPrompts, PackSAMInputs, PointPromptsFromGT

__all__ = [
    'DROP_REASONS',
    'AnnotationFileError',
    'NoInstancesError',
    'classify_annotation',
    'PromptDatasetMixin',
    'SAMCocoDataset',
    'SAMLVISV1Dataset',
    'BoxPromptsFromGT',
    'DetectorBoxPrompts',
    'PackSAMInputs',
    'PointPromptsFromGT',
]
