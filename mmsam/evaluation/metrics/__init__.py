"""Metrics for prompted segmentation (registered in ``mmdet.registry.METRICS``)."""

from .dump_sam_results import DumpSAMResults
from .prompt_miou_metric import PromptMIoUMetric
from .sam_coco_metric import PromptScoreMixin, SAMCocoMetric
from .sam_lvis_metric import SAMLVISMetric

__all__ = [
    'DumpSAMResults',
    'PromptMIoUMetric',
    'PromptScoreMixin',
    'SAMCocoMetric',
    'SAMLVISMetric',
]
