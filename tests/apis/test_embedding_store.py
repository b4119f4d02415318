"""Embeddings loaded from a store give the masks of a fresh encoder pass."""

import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmsam.apis import SAMPredictor
from mmsam.apis.embedding_store import (
    EmbeddingStore,
    EmbeddingStoreError,
    build_index,
    embedding_path,
    encoder_digest,
    write_embedding,
    write_embeddings,
)
from mmsam.testing import build_sam_pair, smooth_image

IMG_SIZE = 256
#: float16 keeps ~3 significant digits of the embedding; the decoded logits move by at
#: most 1.2e-4 on this tiny random model (measured), and 3e-5 of the mask pixels flip
FP16_LOGIT_ATOL = 2e-3


@pytest.fixture(scope='module')
def model():
    return build_sam_pair('tiny', img_size=IMG_SIZE, window_size=4, seed=1)[1]


@pytest.fixture(scope='module')
def images():
    return {'a.png': smooth_image(120, 200, seed=4), 'sub/b.jpg': smooth_image(200, 90, seed=5)}


def _store(model, images, root, dtype):
    list(write_embeddings(model, images.items(), str(root), 'tiny-test', 2, dtype))
    build_index(str(root))
    return EmbeddingStore(str(root))


@pytest.fixture(scope='module')
def stores(model, images, tmp_path_factory):
    return {
        dtype: _store(model, images, tmp_path_factory.mktemp(dtype), dtype)
        for dtype in ('float32', 'float16')
    }


PROMPTS = dict(
    point_coords=np.array([[[30.0, 40.0], [60.0, 50.0]], [[80.0, 20.0], [10.0, 70.0]]]),
    point_labels=np.array([[1, 0], [1, 1]]),
    box=np.array([[10.0, 10.0, 80.0, 90.0], [5.0, 30.0, 60.0, 60.0]]),
)


def test_float32_store_equals_encoder_exactly(model, images, stores):
    store = stores['float32']
    assert store.images == ['a.png', 'sub/b.jpg']
    fresh, loaded = SAMPredictor(model), SAMPredictor(model)
    for name, image in images.items():
        fresh.set_image(image)
        stored = store.set_image(loaded, name)
        assert stored.embedding.dtype == np.float32
        assert loaded.original_size == fresh.original_size == image.shape[:2]
        assert loaded.input_size == fresh.input_size
        torch.testing.assert_close(loaded.features, fresh.features, atol=0, rtol=0)
        for ref, out in zip(fresh.predict(**PROMPTS), loaded.predict(**PROMPTS)):
            np.testing.assert_array_equal(out, ref)


def test_float16_store_within_tolerance(model, images, stores):
    store = stores['float16']
    fresh, loaded = SAMPredictor(model), SAMPredictor(model)
    for name, image in images.items():
        fresh.set_image(image)
        assert store.set_image(loaded, name).embedding.dtype == np.float16
        torch.testing.assert_close(loaded.features, fresh.features, atol=0, rtol=1e-3)
        ref_logits, ref_scores, ref_low = fresh.predict(**PROMPTS, return_logits=True)
        logits, scores, low = loaded.predict(**PROMPTS, return_logits=True)
        np.testing.assert_allclose(low, ref_low, atol=FP16_LOGIT_ATOL, rtol=0)
        np.testing.assert_allclose(scores, ref_scores, atol=FP16_LOGIT_ATOL, rtol=0)
        # a mask pixel may flip only where the float32 logit is within the tolerance
        differ = (logits > 0) != (ref_logits > 0)
        assert differ.mean() < 1e-3
        if differ.any():
            assert np.abs(ref_logits[differ]).max() < FP16_LOGIT_ATOL


def test_store_readable_without_mmsam(model, images, stores):
    from safetensors.numpy import load_file

    root = stores['float16'].root
    with open(f'{root}/index.json', encoding='utf-8') as f:
        index = json.load(f)
    assert index['model'] == 'tiny-test' and index['dtype'] == 'float16'
    assert index['encoder_sha256'] == encoder_digest(model)
    assert index['embedding_shape'] == [256, IMG_SIZE // 16, IMG_SIZE // 16]
    entry = index['images'][1]
    assert entry == {
        'image': 'sub/b.jpg',
        'file': 'embeddings/sub/b.jpg.safetensors',
        'original_size': [200, 90],
        'input_size': [256, 115],
    }
    array = load_file(f'{root}/{entry["file"]}')['image_embedding']
    predictor = SAMPredictor(model)
    predictor.set_image(images['sub/b.jpg'])
    np.testing.assert_array_equal(array, predictor.features[0].numpy().astype(np.float16))


#: reads a store (index, one embedding, the digest check, a predictor's image set from
#: it) in a fresh process, then checks that torch was not loaded
READ_STORE_WITHOUT_TORCH = r"""
import json, sys

from mmsam.apis import EmbeddingStore

class Predictor:  # what an ONNXPredictor offers the store
    image_size = int(sys.argv[3])

    def set_image_embedding(self, embedding, original_size, input_size):
        self.state = (embedding, original_size, input_size)

store = EmbeddingStore(sys.argv[1])
store.check_model(encoder_sha256=store.encoder_sha256)
predictor = Predictor()
stored = store.set_image(predictor, sys.argv[2])
embedding, original_size, input_size = predictor.state
assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)
print(json.dumps({'images': store.images, 'shape': list(embedding.shape),
                  'dtype': str(embedding.dtype), 'sum': float(embedding.astype('float64').sum()),
                  'sizes': [list(original_size), list(input_size)]}))
"""


def test_store_read_without_torch(stores):
    from mmsam.apis.embedding_store import read_embedding

    store = stores['float16']
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cmd = [sys.executable, '-c', READ_STORE_WITHOUT_TORCH, store.root, 'sub/b.jpg', str(IMG_SIZE)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    want = read_embedding(f'{store.root}/embeddings/sub/b.jpg.safetensors')
    assert got == {
        'images': ['a.png', 'sub/b.jpg'],
        'shape': [1, 256, IMG_SIZE // 16, IMG_SIZE // 16],
        'dtype': 'float16',
        'sum': float(want.embedding.astype(np.float64).sum()),
        'sizes': [[200, 90], [256, 115]],
    }


def test_tiled_segmenter_is_exported():
    from mmsam.apis import TiledSegmenter
    from mmsam.apis.tiled_segmentation import TiledSegmenter as defined

    assert TiledSegmenter is defined


@pytest.fixture(scope='module')
def other():
    """The same architecture with other weights."""
    return build_sam_pair('tiny', img_size=IMG_SIZE, window_size=4, seed=2)[1]


def test_other_weights_refused(images, stores, other):
    with pytest.raises(EmbeddingStoreError, match='holds embeddings of model tiny-test'):
        stores['float32'].set_image(SAMPredictor(other), 'a.png')
    bigger = build_sam_pair('tiny', img_size=320, window_size=4, seed=1)[1]
    with pytest.raises(EmbeddingStoreError, match='256 px inputs .* takes 320 px inputs'):
        stores['float32'].set_image(SAMPredictor(bigger), 'a.png')
    with pytest.raises(EmbeddingStoreError, match='holds embeddings of model'):
        stores['float32'].check_model(encoder_sha256='0' * 64)


def test_store_errors(model, stores, tmp_path):
    with pytest.raises(EmbeddingStoreError, match='index.json does not exist'):
        EmbeddingStore(str(tmp_path))
    with pytest.raises(EmbeddingStoreError, match='holds no embedding files'):
        build_index(str(tmp_path))
    with pytest.raises(KeyError, match='missing.png'):
        stores['float32'].get('missing.png')
    with pytest.raises(ValueError, match='relative paths inside the folder'):
        embedding_path(str(tmp_path), '../x.png')
    # one store, one model: files of two encoders are refused when the index is built
    emb = np.zeros((256, 16, 16), np.float32)
    write_embedding(str(tmp_path), 'a.png', emb, (16, 16), (256, 256), 256, 'm', 'f' * 64)
    write_embedding(str(tmp_path), 'b.png', emb, (16, 16), (256, 256), 256, 'm', 'e' * 64)
    with pytest.raises(EmbeddingStoreError, match=r'b.png.safetensors has encoder_sha256='):
        build_index(str(tmp_path))


def test_onnx_predictor_from_store(model, images, stores, tmp_path):
    pytest.importorskip('onnxruntime')
    from mmsam.deploy import ONNXPredictor, export_decoder

    onnx = ONNXPredictor(export_decoder(model, tmp_path / 'decoder.onnx'))
    torch_predictor = SAMPredictor(model)
    store = stores['float32']
    store.set_image(onnx, 'sub/b.jpg', encoder_sha256=encoder_digest(model))
    store.set_image(torch_predictor, 'sub/b.jpg')
    masks, scores, low = onnx.predict(PROMPTS['point_coords'][0], PROMPTS['point_labels'][0])
    ref = torch_predictor.predict(PROMPTS['point_coords'][0], PROMPTS['point_labels'][0])
    np.testing.assert_allclose(low, ref[2], atol=1e-3, rtol=0)
    np.testing.assert_allclose(scores, ref[1], atol=1e-3, rtol=0)
    with pytest.raises(EmbeddingStoreError, match='not of this model'):
        store.set_image(onnx, 'a.png', encoder_sha256='0' * 64)


def test_embed_folder_resumes_and_refuses_another_encoder(model, other, tmp_path):
    from PIL import Image

    from mmsam.cli.embed import embed_folder

    data, out = tmp_path / 'data', str(tmp_path / 'store')
    data.mkdir()
    Image.fromarray(smooth_image(40, 50, seed=1)).save(data / 'x.png')
    first = embed_folder(model, str(data), out, 'tiny-test', dtype='float32')
    assert (len(first.done), len(first.skipped), first.num_images) == (1, 0, 1)
    again = embed_folder(model, str(data), out, 'tiny-test', dtype='float32')
    assert (len(again.done), len(again.skipped), again.num_images) == (0, 1, 1)
    with pytest.raises(EmbeddingStoreError, match='holds embeddings of model tiny-test'):
        embed_folder(other, str(data), out, 'other')
