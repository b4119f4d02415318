"""Parameters and FLOPs of SAM models: the image encoder, one prompt through the decoder, AMG.

As OpenMMLab's ``get_flops.py``: mmengine's ``FlopAnalyzer`` counts multiply-accumulates
(the "FLOPs" of the model tables) on a traced forward with random weights. mmsam adds a
count for ``scaled_dot_product_attention`` (``B * heads * L * S * (E + Ev)``: the two
matrix products), which the analyzer skips, so attention is not lost where a model runs
it through SDPA. Element-wise work (norms, activations, softmax) is not counted.

For each model (a name from ``mmsam.list_models()`` or a config file):

* ``encoder``: the image encoder on one ``img_size`` image;
* ``per prompt``: prompt encoder + mask decoder for one point prompt, three masks, as the
  model runs it (its speed path unless ``--reference-decoder``), averaged over
  ``--prompts`` prompts decoded together on one image embedding (64: the official AMG's
  ``points_per_batch``; the speed path shares the image's work among them, so its
  per-prompt count falls as the batch grows, the reference path's does not);
* ``AMG``: the encoder plus ``points_per_side ** 2`` prompts (32 x 32 = 1,024 at the
  official defaults, one crop), the mask post-processing not counted.

Example::

    python tools/analysis_tools/get_flops.py sam_vit-base-p16_3rdparty_sa1b-1024px \\
        mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px --json work_dirs/flops.json
"""

import argparse
import logging
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

#: the official AutomaticMaskGenerator's points_per_side
AMG_POINTS_PER_SIDE = 32


def sdpa_flop_jit(inputs: List, outputs: List) -> int:
    """Multiply-accumulates of ``scaled_dot_product_attention(q, k, v, ...)``:
    ``q @ k^T`` and ``attn @ v``, ``B * heads * L * S * (E + Ev)``."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for side in q[:-2]:
        batch *= side
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_macs(module: nn.Module, inputs: tuple) -> int:
    """Multiply-accumulates of ``module(*inputs)`` (traced, SDPA counted)."""
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return int(analyzer.total())


class _PromptDecoder(nn.Module):
    """``SAM.predict_prompts`` for point prompts as a module the analyzer can trace."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor):
        return self.sam.predict_prompts(embedding, (coords, labels), None, None, True)


def model_flops(
    name: str,
    prompts: int = 64,
    reference_decoder: bool = False,
    points_per_side: int = AMG_POINTS_PER_SIDE,
    **overrides,
) -> Dict:
    """Parameters and multiply-accumulates of one model (random weights, seeded).

    Args:
        name (str): model name or config file.
        prompts (int): point prompts decoded together for the per-prompt count.
        reference_decoder (bool): count the decoder's reference path, not its speed path.
        points_per_side (int): AMG point grid side (official default 32).
        **overrides: ``config.model`` overrides for :func:`mmsam.get_model`.

    Returns:
        dict: ``encoder_params``, ``encoder_macs``, ``prompt_macs`` (per prompt),
        ``amg_macs`` and the encoder's share of AMG, ``amg_encoder_share``.
    """
    from mmsam.apis import get_model

    torch.manual_seed(0)
    sam = get_model(name, pretrained=False, **overrides).eval()
    if not hasattr(sam, 'predict_prompts'):
        raise SystemExit(f'{name}: not a promptable SAM model (a headless encoder?)')
    size = sam.image_size
    encoder_size = getattr(sam.data_preprocessor, 'encoder_image_size', None) or size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, encoder_size, encoder_size, generator=generator)
    decoder = sam.mask_decoder
    fast = getattr(decoder, 'fast_path', None)
    with torch.no_grad():
        encoder_macs = count_macs(sam.backbone, (image,))
        embedding = sam.extract_feat(image)[0]
        coords = torch.rand(prompts, 1, 2, generator=generator) * size
        labels = torch.ones(prompts, 1, dtype=torch.long)
        if reference_decoder and fast is not None:
            decoder.fast_path = False
        try:
            decode_macs = count_macs(_PromptDecoder(sam), (embedding, coords, labels))
        finally:
            if fast is not None:
                decoder.fast_path = fast
    prompt_macs = decode_macs / prompts
    amg_macs = encoder_macs + points_per_side**2 * prompt_macs
    return dict(
        model=name,
        encoder_input=encoder_size,
        encoder_params=parameter_count(sam.backbone)[''],
        encoder_macs=encoder_macs,
        decoder_path='reference' if reference_decoder or not fast else 'speed',
        prompt_macs=prompt_macs,
        amg_points=points_per_side**2,
        amg_macs=amg_macs,
        amg_encoder_share=encoder_macs / amg_macs,
    )


def format_table(rows: List[Dict]) -> str:
    """A plain-text table of :func:`model_flops` results (G = 1e9 multiply-accumulates)."""
    head = (
        f'{"model":48s} {"enc params":>10s} {"encoder":>9s} {"per prompt":>11s} '
        f'{"AMG":>9s} {"enc share":>9s}'
    )
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append(
            f'{r["model"][:48]:48s} {r["encoder_params"] / 1e6:9.2f}M '
            f'{r["encoder_macs"] / 1e9:8.1f}G {r["prompt_macs"] / 1e9:10.3f}G '
            f'{r["amg_macs"] / 1e9:8.1f}G {100 * r["amg_encoder_share"]:8.1f}%'
        )
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='+', help='model names or config files')
    parser.add_argument('--prompts', type=int, default=64, help='prompts decoded together')
    parser.add_argument(
        '--reference-decoder', action='store_true', help="the decoder's reference path"
    )
    parser.add_argument('--points-per-side', type=int, default=AMG_POINTS_PER_SIDE)
    parser.add_argument('--json', default=None, help='also write the results here')
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.points_per_side < 1:
        parser.error('--prompts and --points-per-side must be positive')
    return args


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    logging.getLogger('mmengine').setLevel(logging.ERROR)  # the tracer's op-by-op notes
    rows = [
        model_flops(m, args.prompts, args.reference_decoder, args.points_per_side)
        for m in args.models
    ]
    print(format_table(rows))
    if args.json:
        from mmsam.utils.atomic_file import atomic_write_json

        atomic_write_json(rows, args.json)
    return rows


if __name__ == '__main__':
    main()
