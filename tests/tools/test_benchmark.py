"""The benchmark tool runs end to end on a tiny model (it never asserts a time)."""

import json

import pytest

from mmsam.testing.tool_scripts import load_tool


def _load_tool():
    return load_tool('tools/analysis_tools/benchmark.py')


def test_benchmark_tiny_writes_table_and_json(tmp_path, capsys):
    pytest.importorskip('segment_anything')
    tool = _load_tool()
    out = tmp_path / 'bench' / 'result.json'
    report = tool.main(
        [
            '--arch', 'tiny', '--img-size', '256', '--window-size', '4',
            '--runs', '2', '--warmup', '0', '--image-hw', '96', '128',
            '--amg-points-per-side', '4', '--threads', '1',
            '--cases', 'encoder_b1,decoder_1pt,decoder_64box,predictor,amg_default',
            '--json', str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert 'official/mmsam' in printed and 'decoder_64box' in printed
    saved = json.loads(out.read_text())
    assert saved['results'] == json.loads(json.dumps(report['results']))
    assert saved['environment']['torch']
    by_case = {row['case']: row for row in saved['results']}
    assert set(by_case) == {
        'encoder_b1',
        'decoder_1pt',
        'decoder_64box',
        'predictor',
        'amg_default',
    }
    for case in ('encoder_b1', 'decoder_1pt', 'decoder_64box'):
        for impl in ('official', 'mmsam'):
            result = by_case[case][impl]
            assert len(result['times']) == 2 and result['min'] <= result['median']
        assert by_case[case]['ratio'] > 0


def test_benchmark_memory_subprocess(tmp_path):
    tool = _load_tool()
    report = tool.main(
        [
            '--arch', 'tiny', '--img-size', '256', '--window-size', '4', '--runs', '1',
            '--warmup', '0', '--cases', 'encoder_b1', '--memory', '--no-official',
        ]
    )  # fmt: skip
    peak = report['results'][0]['mmsam']['peak_mib']
    assert peak is not None and 50 < peak < 8000


def test_benchmark_rejects_unknown_case():
    tool = _load_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['--cases', 'encoder_b1,warp_drive'])


def test_benchmark_mobile_sam_rows(tmp_path):
    """--model mobile_sam times the reference mobile_sam and mmsam's MobileSAM config."""
    pytest.importorskip('mobile_sam')
    tool = _load_tool()
    report = tool.main(
        ['--model', 'mobile_sam', '--runs', '1', '--warmup', '0', '--cases', 'decoder_1pt']
    )
    row = report['results'][0]
    assert report['args']['img_size'] == 1024
    assert row['official']['times'] and row['mmsam']['times'] and row['ratio'] > 0


def test_benchmark_efficientvit_sam_rows():
    """--model efficientvit_sam times efficientsam's model and mmsam's config of a size."""
    pytest.importorskip('efficientsam')
    tool = _load_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['--model', 'efficientvit_sam', '--arch', 'base'])
    report = tool.main(
        ['--model', 'efficientvit_sam', '--arch', 'l0', '--runs', '1', '--warmup', '0']
        + ['--cases', 'decoder_1pt']
    )
    row = report['results'][0]
    assert report['args']['img_size'] == 1024 and report['args']['encoder_size'] == 512
    assert row['official']['times'] and row['mmsam']['times'] and row['ratio'] > 0
