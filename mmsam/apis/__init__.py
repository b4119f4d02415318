"""The library surface: model zoo, interactive prediction, automatic mask generation,
auto-annotation of an image, segmentation of large images tile by tile, SA-1B files
and image reading.

The command-line jobs over files and folders (``mmsam segment``, ``amg``, ``annotate``)
are :mod:`mmsam.cli`'s; they call these.

The names below are imported on first use (``from mmsam.apis import SAMPredictor``
works as usual), so that the light parts (:func:`list_models`) do not pull in torch.
"""

import importlib

#: public name -> the module of this package that defines it
_EXPORTS = {
    'SAMPredictor': 'predictor',
    'AutomaticMaskGenerator': 'mask_generator',
    'BatchSAMPredictor': 'batch_predictor',
    'ImageEmbedding': 'batch_predictor',
    'encode_images': 'batch_predictor',
    'EmbeddingStore': 'embedding_store',
    'TiledSegmenter': 'tiled_segmentation',
    'write_sa1b': 'sa1b',
    'read_sa1b': 'sa1b',
    'records_to_sa1b': 'sa1b',
    'decode_sa1b_masks': 'sa1b',
    'get_model': 'model_zoo',
    'list_models': 'model_index',
    'convert_checkpoint': 'convert',
    'ConversionReport': 'convert',
    'annotate_image': 'auto_annotate',
    'build_detector': 'auto_annotate',
    'segment_by_text': 'text_prompts',
    'TextSegmentation': 'text_prompts',
    'load_image': 'image_io',
    'ImageReadError': 'image_io',
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
