"""tools/analysis_tools/get_flops.py on a seeded 256-px MobileSAM.

The SDPA count mmsam adds to mmengine's FlopAnalyzer is checked against the analyzer's own
matrix-product count of the same attention written out (q @ k^T, softmax, @ v): MobileSAM's
fused encoder runs its window attention through SDPA, the plain one (mmpretrain's
LeAttention) through explicit matmuls, and both must count the same.
"""

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmsam.testing.eval_runs import input_size_overrides
from mmsam.testing.mobile_sam_parity import mobile_sam_config_path
from mmsam.testing.tool_scripts import load_tool

IMG = 256


def _tool():
    return load_tool('tools/analysis_tools/get_flops.py')


class _Attention(nn.Module):
    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa

    def forward(self, q, k, v):
        if self.sdpa:
            return F.scaled_dot_product_attention(q, k, v)
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v


def test_sdpa_count_equals_the_written_out_attention():
    tool = _tool()
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5, 8, generator=gen)
    k = torch.randn(2, 3, 7, 8, generator=gen)
    v = torch.randn(2, 3, 7, 4, generator=gen)
    sdpa = tool.count_macs(_Attention(True), (q, k, v))
    assert sdpa == tool.count_macs(_Attention(False), (q, k, v)) == 2 * 3 * 5 * 7 * (8 + 4)


def test_encoder_attention_is_counted_from_the_architecture():
    """The tool's count minus the analyzer's own (which skips SDPA) is the window attention of
    MobileSAM's TinyViT-5M at 256 px, from its definition: per block, windows x heads x
    N^2 x (key_dim + value_dim), N = window^2, windows cover the padded token grid."""
    from mmengine.analysis import FlopAnalyzer

    import mmsam

    tool = _tool()
    overrides = input_size_overrides(IMG)
    counted = tool.model_flops(mobile_sam_config_path(), prompts=4, **overrides)
    torch.manual_seed(0)
    model = mmsam.get_model(mobile_sam_config_path(), **overrides).eval()
    image = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        analyzer = FlopAnalyzer(model.backbone, (image,))
        analyzer.unsupported_ops_warnings(False)
        without_sdpa = analyzer.total()
    # (token grid side, depth, heads, window) of the attention stages; key_dim = value_dim =
    # channels / heads = 32 in every stage of TinyViT-5M (channels 128, 160, 320)
    stages = [(IMG // 8, 2, 4, 7), (IMG // 16, 6, 5, 14), (IMG // 16, 2, 10, 7)]
    attention = sum(
        depth * math.ceil(side / ws) ** 2 * heads * (ws * ws) ** 2 * (32 + 32)
        for side, depth, heads, ws in stages
    )
    assert counted['encoder_macs'] - without_sdpa == attention
    assert counted['encoder_params'] == 5_743_892


def test_per_prompt_and_amg_counts():
    tool = _tool()
    overrides = input_size_overrides(IMG)
    path = mobile_sam_config_path()
    counts = {
        (ref, n): tool.model_flops(path, prompts=n, reference_decoder=ref, **overrides)
        for ref in (False, True)
        for n in (4, 8)
    }
    # the reference decoder repeats the image embedding for every prompt: a prompt costs the
    # same whether 4 or 8 are decoded together, but for the dense positional encoding of the
    # 16 x 16 embedding grid (256 x 2 x 128 MACs), made once per call; the speed path also
    # shares the image's work in the decoder
    ref4, ref8 = counts[True, 4]['prompt_macs'], counts[True, 8]['prompt_macs']
    assert ref4 - ref8 == 256 * 2 * 128 / 4 - 256 * 2 * 128 / 8
    assert counts[False, 8]['prompt_macs'] < counts[False, 4]['prompt_macs'] < ref4
    assert counts[True, 4]['decoder_path'] == 'reference'
    assert counts[False, 4]['decoder_path'] == 'speed'
    four = counts[False, 4]
    assert four['amg_macs'] == four['encoder_macs'] + 1024 * four['prompt_macs']


def test_command_line_writes_json(tmp_path, capsys):
    tool = _tool()
    out = tmp_path / 'flops.json'
    rows = tool.main(
        [mobile_sam_config_path(), '--prompts', '2', '--points-per-side', '4', '--json', str(out)]
    )
    assert json.loads(out.read_text()) == rows and rows[0]['amg_points'] == 16
    assert 'per prompt' in capsys.readouterr().out
