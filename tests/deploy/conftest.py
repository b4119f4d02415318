"""Shared fixtures: one tiny random-weight SAM (256 px) exported once per session."""

import numpy as np
import pytest

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')

from mmsam.deploy import export_decoder, export_encoder, quantize_dynamic_uint8  # noqa: E402
from mmsam.testing import build_sam_pair  # noqa: E402

IMG_SIZE = 256


@pytest.fixture(scope='session')
def sam_pair():
    """``(official, mmsam)`` tiny SAMs with the same random weights, 256 px inputs, 5x5 windows."""
    return build_sam_pair(
        'tiny', img_size=IMG_SIZE, window_size=5, seed=2
    )  # 16 % 5: padded windows


@pytest.fixture(scope='session')
def onnx_files(sam_pair, tmp_path_factory):
    """Paths of the exported decoder graphs: ``decoder``, ``quantized``, ``single``."""
    model = sam_pair[1]
    folder = tmp_path_factory.mktemp('onnx')
    files = dict(
        decoder=export_decoder(model, folder / 'decoder.onnx'),
        single=export_decoder(
            model,
            folder / 'decoder_single.onnx',
            return_single_mask=True,
            use_stability_score=True,
            return_extra_metrics=True,
        ),
    )
    files['quantized'] = quantize_dynamic_uint8(files['decoder'], folder / 'decoder_q.onnx')
    return files


@pytest.fixture(scope='session')
def encoder_file(sam_pair, tmp_path_factory):
    """Path of the exported image encoder graph."""
    return export_encoder(sam_pair[1], tmp_path_factory.mktemp('onnx') / 'encoder.onnx')


@pytest.fixture(scope='session')
def image():
    """A non-square ``(150, 220, 3)`` uint8 RGB image of smooth blobs."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, size=(10, 14, 3)).astype(np.float32)
    rows = np.linspace(0, 9, 150)
    cols = np.linspace(0, 13, 220)
    big = small[np.round(rows).astype(int)][:, np.round(cols).astype(int)]
    return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)
