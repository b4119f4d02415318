"""tools/deployment/export_onnx.py: a config and a checkpoint in, ONNX graphs out."""

import os

import numpy as np
import pytest

from mmsam.apis import SAMPredictor
from mmsam.deploy import ONNXPredictor
from mmsam.deploy.onnx_session import CheckedSession
from mmsam.testing import sam_model_cfg
from mmsam.testing.tool_scripts import load_tool
from mmsam.utils import save_checkpoint


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/deployment/export_onnx.py')


@pytest.fixture(scope='module')
def config_and_checkpoint(sam_pair, tmp_path_factory):
    """A config file of the tiny 256 px SAM and a checkpoint of its random weights."""
    folder = tmp_path_factory.mktemp('tool')
    config = folder / 'sam_tiny_256.py'
    config.write_text(f'model = {sam_model_cfg("tiny", img_size=256, window_size=5)!r}\n')
    checkpoint = folder / 'sam_tiny_256.pth'
    save_checkpoint(sam_pair[1].state_dict(), str(checkpoint))
    return str(config), str(checkpoint)


def test_tool_exports_decoder_options_and_quantized(
    tool, config_and_checkpoint, sam_pair, tmp_path, capsys
):
    config, checkpoint = config_and_checkpoint
    out, quant = tmp_path / 'dec.onnx', tmp_path / 'dec_q.onnx'
    argv = [config, checkpoint, '--output', str(out), '--quantize-out', str(quant)]
    assert tool.main(argv + ['--return-single-mask', '--gelu-approximate']) == 0
    printed = capsys.readouterr().out
    assert 'decoder:' in printed and 'quantized decoder:' in printed
    assert sorted(os.listdir(tmp_path)) == ['dec.onnx', 'dec_q.onnx']  # no temporary files
    session = CheckedSession(out)
    assert session.metadata['mmsam.return_single_mask'] == 'true'
    assert CheckedSession(quant).metadata['mmsam.graph'] == '"decoder"'
    # the tool's graph decodes like the model it was given (tanh GELU: looser tolerance)
    ours = SAMPredictor(sam_pair[1])
    ours.set_image_embedding(np.ones((1, 256, 16, 16), np.float32) * 0.1, (100, 140))
    onnx = ONNXPredictor(out)
    onnx.set_image_embedding(ours.get_image_embedding().numpy(), (100, 140))
    prompt = dict(point_coords=[[30, 40], [90, 60], [10, 10]], point_labels=[1, 1, 0])
    got = onnx.predict(**prompt, return_logits=True)
    want = ours.predict(**prompt, multimask_output=False, return_logits=True)
    np.testing.assert_allclose(got[0], want[0], atol=1e-2, rtol=0)


def test_tool_exports_encoder(tool, config_and_checkpoint, tmp_path, capsys):
    config, checkpoint = config_and_checkpoint
    dec, enc = tmp_path / 'dec.onnx', tmp_path / 'enc.onnx'
    assert tool.main([config, checkpoint, '--output', str(dec), '--encoder-output', str(enc)]) == 0
    assert 'encoder:' in capsys.readouterr().out
    meta = CheckedSession(enc).metadata
    assert meta['mmsam.graph'] == '"encoder"' and meta['mmsam.image_size'] == '256'


def test_tool_reports_bad_inputs(tool, config_and_checkpoint, tmp_path, capsys):
    config, checkpoint = config_and_checkpoint
    out = str(tmp_path / 'dec.onnx')
    assert tool.main([config, str(tmp_path / 'missing.pth'), '--output', out]) == 1
    assert 'missing.pth' in capsys.readouterr().err
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    assert tool.main([config, str(bad), '--output', out]) == 1
    assert 'bad.pth' in capsys.readouterr().err
    assert not os.path.exists(out)
    with pytest.raises(SystemExit):
        tool.main([config, checkpoint, '--output', out, '--opset', '9'])
    assert '--opset must be >= 11' in capsys.readouterr().err
