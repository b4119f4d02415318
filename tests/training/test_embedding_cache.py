"""The embedding cache: computed once per input and encoder, float16 on disk, reused."""

import glob
import os.path as osp

import torch
from mmdet.registry import MODELS
from mmengine.registry import DefaultScope

import mmsam.registration  # noqa: F401
from mmsam.models.utils.embedding_cache import EmbeddingCache, tensor_digest, weights_digest
from mmsam.testing.training import DECODER_FT, shapes_batch, tiny_recipe


def _model(cache_dir):
    cfg = tiny_recipe(DECODER_FT, embedding_cache=dict(cache_dir=str(cache_dir)))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    return model.train()


def test_cache_reuses_entries_and_keys_by_input_and_weights(tmp_path):
    model = _model(tmp_path)
    data = model.data_preprocessor(shapes_batch(0), True)
    first = model(**data, mode='loss')
    criterion = model.__dict__['_training_loss']
    cache = criterion.cache
    assert (cache.hits, cache.misses) == (0, 2)
    files = glob.glob(osp.join(str(tmp_path), '*', '*.pt'))
    assert len(files) == 2
    stored = torch.load(files[0], weights_only=True)
    assert stored.dtype == torch.float16 and stored.shape == (64, 8, 8)
    # an epoch later: read back, same losses (the first pass also used the fp16 values)
    again = model(**data, mode='loss')
    assert (cache.hits, cache.misses) == (2, 2)
    for key in first:
        assert torch.equal(first[key], again[key])
    # the entries are the encoder's output rounded to float16
    with torch.no_grad():
        direct = model.extract_feat(data['inputs'])[0]
    cached = cache.get(data['inputs'], weights_digest(model.backbone), None)
    torch.testing.assert_close(cached, direct.half().float(), rtol=0, atol=0)
    # a flipped image is another input
    flipped = data['inputs'].flip(-1)
    cache.get(flipped, weights_digest(model.backbone), lambda x: model.extract_feat(x)[0])
    assert cache.misses == 4
    # other encoder weights: other entries
    with torch.no_grad():
        model.backbone.patch_embed.projection.bias.add_(1.0)
    key = weights_digest(model.backbone)
    assert key != criterion._weights_key
    cache.get(data['inputs'], key, lambda x: model.extract_feat(x)[0])
    assert cache.misses == 6


def test_damaged_entry_is_recomputed(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    x = torch.randn(1, 3, 4, 4)
    calls = []

    def compute(batch):
        calls.append(len(batch))
        return batch.mean(dim=1, keepdim=True)

    out = cache.get(x, 'w', compute)
    path = cache.path(tensor_digest(x[0]), 'w')
    with open(path, 'wb') as f:
        f.write(b'not a tensor')
    again = cache.get(x, 'w', compute)
    assert calls == [1, 1]
    torch.testing.assert_close(again, out)
