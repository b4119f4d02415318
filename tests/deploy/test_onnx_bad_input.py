"""Missing ONNX packages and wrong inputs give clear errors, not onnxruntime stack traces."""

import sys

import numpy as np
import pytest

from mmsam.deploy import ONNXPredictor, export_decoder, import_onnxruntime
from mmsam.deploy.onnx_session import CheckedSession


@pytest.mark.parametrize('blocked', ['onnxruntime', 'onnx'])
def test_missing_package_names_the_extra(monkeypatch, sam_pair, tmp_path, onnx_files, blocked):
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import <blocked>` fail
    with pytest.raises(ImportError, match=r'pip install mmsam\[onnx\]') as err:
        if blocked == 'onnx':
            export_decoder(sam_pair[1], tmp_path / 'decoder.onnx')
        else:
            ONNXPredictor(onnx_files['decoder'])
    assert blocked in str(err.value)
    assert not (tmp_path / 'decoder.onnx').exists()


def test_import_helper_returns_module():
    assert import_onnxruntime() is sys.modules['onnxruntime']


@pytest.fixture(scope='module')
def session(onnx_files):
    return CheckedSession(onnx_files['decoder'])


def good_feeds():
    return {
        'image_embeddings': np.zeros((1, 256, 16, 16), np.float32),
        'point_coords': np.zeros((1, 2, 2), np.float32),
        'point_labels': np.array([[1, -1]], np.float32),
        'mask_input': np.zeros((1, 1, 64, 64), np.float32),
        'has_mask_input': np.zeros(1, np.float32),
        'orig_im_size': np.array([100, 120], np.float32),
    }


@pytest.mark.parametrize(
    'name, value, message',
    [
        ('image_embeddings', np.zeros((1, 256, 32, 32), np.float32), 'must have shape'),
        ('image_embeddings', np.zeros((256, 16, 16), np.float32), 'must have shape'),
        ('point_labels', np.array([[1, -1]], np.int64), 'must have dtype float32'),
        ('orig_im_size', np.array([100, 120], np.float64), 'must have dtype float32'),
        ('mask_input', [[0.0]], 'must be a numpy array'),
    ],
)
def test_session_refuses_wrong_feed(session, name, value, message):
    feeds = good_feeds()
    feeds[name] = value
    with pytest.raises(ValueError, match=message) as err:
        session.run(feeds)
    assert repr(name) in str(err.value)


def test_session_names_missing_and_unknown_inputs(session):
    feeds = good_feeds()
    del feeds['orig_im_size']
    feeds['points'] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"missing \['orig_im_size'\], unknown \['points'\]"):
        session.run(feeds)
    outputs = session.run(good_feeds())
    assert outputs['masks'].shape == (1, 4, 100, 120)


def test_session_refuses_missing_and_non_onnx_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.onnx'):
        CheckedSession(tmp_path / 'nowhere.onnx')
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'not a graph')
    with pytest.raises(ValueError, match='not a loadable ONNX model'):
        CheckedSession(bad)


def test_predictor_refuses_swapped_graphs(onnx_files, encoder_file):
    with pytest.raises(ValueError, match='not an mmsam decoder graph'):
        ONNXPredictor(encoder_file)
    with pytest.raises(ValueError, match='not an mmsam encoder graph'):
        ONNXPredictor(onnx_files['decoder'], encoder=onnx_files['decoder'])


@pytest.fixture(scope='module')
def predictor(onnx_files):
    onnx = ONNXPredictor(onnx_files['decoder'])
    onnx.set_image_embedding(np.zeros((1, 256, 16, 16), np.float32), (100, 120))
    return onnx


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(point_coords=[[1, 2]]), 'point_coords and point_labels must be given together'),
        (
            dict(point_coords=[[[1, 2]]], point_labels=[[1]]),
            r'point_coords must have shape \(P, 2\)',
        ),
        (dict(point_coords=[[1, 2]], point_labels=[1, 1]), 'point_labels must have shape'),
        (dict(point_coords=[[1, 2]], point_labels=[2]), 'point_labels must be 1'),
        (dict(point_coords=[['a', 2]], point_labels=[1]), 'point_coords must be numeric'),
        (dict(point_coords=[[np.nan, 2]], point_labels=[1]), 'point_coords must hold finite'),
        (dict(box=[1, 2, 3]), r'box must have shape \(4,\)'),
        (dict(box=[10, 2, 3, 4]), 'x2 >= x1'),
        (dict(mask_input=np.zeros((1, 256, 256))), r'mask_input must have shape \(1, 64, 64\)'),
    ],
)
def test_predictor_refuses_bad_prompts(predictor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def test_predictor_refuses_bad_embeddings_and_state(onnx_files):
    onnx = ONNXPredictor(onnx_files['decoder'])
    with pytest.raises(RuntimeError, match='no image is set'):
        onnx.predict(point_coords=[[1, 2]], point_labels=[1])
    with pytest.raises(RuntimeError, match='encoder'):
        onnx.set_image(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r'embedding must have shape \(1, 256, 16, 16\)'):
        onnx.set_image_embedding(np.zeros((1, 256, 64, 64), np.float32), (100, 120))
    with pytest.raises(ValueError, match='embedding must be a floating-point array'):
        onnx.set_image_embedding(np.zeros((1, 256, 16, 16), np.int64), (100, 120))
    with pytest.raises(ValueError, match='input_size'):
        onnx.set_image_embedding(np.zeros((256, 16, 16)), (100, 120), input_size=(100, 120))
    onnx.set_image_embedding(np.zeros((256, 16, 16)), (100, 120))
    assert onnx.get_image_embedding().dtype == np.float32
    assert onnx.input_size == (213, 256)
    onnx.reset_image()
    with pytest.raises(RuntimeError, match='no image is set'):
        onnx.get_image_embedding()


def test_set_image_refuses_bad_images(onnx_files, encoder_file):
    onnx = ONNXPredictor(onnx_files['decoder'], encoder_file)
    with pytest.raises(ValueError, match='uint8'):
        onnx.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        onnx.set_image(np.zeros((10, 10), np.uint8))
