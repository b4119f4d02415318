"""export_decoder/export_encoder: files written whole, metadata, external data for big graphs."""

import os

import numpy as np

from mmsam.deploy import export as onnx_export
from mmsam.deploy.graph_spec import DECODER_INPUT_NAMES, decode_metadata
from mmsam.deploy.onnx_session import CheckedSession


def test_decoder_metadata_and_interface(onnx_files):
    session = CheckedSession(onnx_files['decoder'])
    assert tuple(session.input_shapes) == DECODER_INPUT_NAMES
    assert session.input_shapes['point_coords'] == (1, 'num_points', 2)
    assert session.output_names == ['masks', 'iou_predictions', 'low_res_masks']
    assert decode_metadata(session.metadata) == {
        'graph': 'decoder',
        'image_size': 256,
        'mask_threshold': 0.0,
        'num_mask_tokens': 4,
        'return_single_mask': False,
        'use_stability_score': False,
        'return_extra_metrics': False,
    }


def test_big_graphs_keep_weights_in_a_data_file(monkeypatch, sam_pair, onnx_files, tmp_path):
    monkeypatch.setattr(onnx_export, 'EXTERNAL_DATA_BYTES', 0)
    path = onnx_export.export_decoder(sam_pair[1], tmp_path / 'decoder.onnx')
    assert sorted(os.listdir(tmp_path)) == ['decoder.onnx', 'decoder.onnx.data']
    assert os.path.getsize(tmp_path / 'decoder.onnx') < 1_000_000
    inputs = onnx_export.decoder_dummy_inputs(sam_pair[1], 3)
    feeds = {name: t.numpy() for name, t in zip(DECODER_INPUT_NAMES, inputs)}
    got = CheckedSession(path).run(feeds)
    want = CheckedSession(onnx_files['decoder']).run(feeds)
    np.testing.assert_array_equal(got['low_res_masks'], want['low_res_masks'])
