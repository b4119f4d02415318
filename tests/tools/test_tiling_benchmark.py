"""tools/analysis_tools/tiling_benchmark.py runs end to end on a small TIFF (no time asserted)."""

import json

import numpy as np
import tifffile

from mmsam.testing.tool_scripts import load_tool


def _load_tool():
    return load_tool('tools/analysis_tools/tiling_benchmark.py')


def test_tiling_benchmark_writes_the_tiff_by_chunks_and_reports(tmp_path, capsys):
    tool = _load_tool()
    tiff = tmp_path / 'big.tif'
    out = tmp_path / 'result.json'
    args = ['--size', '1100', '--tiff', str(tiff), '--max-tiles', '1', '--json', str(out)]
    result = tool.main(args)
    assert json.loads(out.read_text()) == result
    assert result['image'] == [1100, 1100] and result['tiles_total'] == 4
    assert result['tiles_run'] == 1 and result['records'] == 1
    assert 'lazily' in result['reader']
    assert result['peak_rss_mib_end'] >= result['peak_rss_mib_model_built'] > 0
    # the TIFF holds the chunks the generator made, edge chunks cropped to the image
    image = tifffile.imread(tiff)
    assert image.shape == (1100, 1100, 3)
    np.testing.assert_array_equal(image[512:1024, 1024:], tool._chunk(512, 1024)[:, :76])
    assert '"tiles_run": 1' in capsys.readouterr().out
