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


def test_weights_digest_reads_every_dtype_and_rank():
    """BatchNorm's 0-d ``num_batches_tracked`` (MobileSAM's encoder has BatchNorm) and
    bfloat16 weights are hashed by their bytes, as a hand-written SHA-256 of the same
    definition gives."""
    import hashlib

    import numpy as np

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    module.register_buffer('bf16_table', torch.randn(2, 3).to(torch.bfloat16))
    module.register_buffer('empty', torch.zeros(0, 5))
    expected = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        expected.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: its 16-bit pattern
            raw = tensor.view(torch.int16).numpy().tobytes()
        else:
            raw = np.ascontiguousarray(tensor.numpy()).tobytes()
        expected.update(raw)
    assert weights_digest(module) == expected.hexdigest()
    scalar = torch.tensor(7, dtype=torch.long)
    expected = hashlib.sha256(b'torch.int64:();' + np.int64(7).tobytes()).hexdigest()
    assert tensor_digest(scalar) == expected
