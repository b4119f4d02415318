"""Defaults of segment-by-text, light to import (the command line's parser reads them).

The detector is mmdet's Grounding DINO Swin-T with the authors' weights (converted by
mmdet; name, config and weights URL in mmdet's ``configs/grounding_dino/metafile.yml``),
and the thresholds are the official Grounded-SAM demo's.
"""

#: mmdet model name of the default detector
DEFAULT_DET_MODEL = 'grounding_dino_swin-t_pretrain_obj365_goldg_cap4m'
#: on a query's highest phrase-token probability
DEFAULT_BOX_THRESHOLD = 0.35
#: on the label phrase's mean token probability
DEFAULT_TEXT_THRESHOLD = 0.25
