"""Export SAM's prompt encoder + mask decoder (and optionally its image encoder) to ONNX.

Example::

    python tools/deployment/export_onnx.py \\
        configs/sam/sam_vit-base-p16_3rdparty_sa1b-1024px.py sam_vit_b_01ec64.pth \\
        --output sam_decoder.onnx --encoder-output sam_encoder.onnx \\
        --quantize-out sam_decoder_quant.onnx

The decoder graph has the official ``SamOnnxModel``'s inputs and outputs; each
graph is run once in onnxruntime after export and compared with PyTorch.
"""

import argparse
import os
import sys

import torch

import mmsam.registration  # noqa: F401  (registers the modules)
from mmsam.deploy import export as onnx_export
from mmsam.deploy.graph_spec import DECODER_INPUT_NAMES, ENCODER_INPUT_NAME
from mmsam.deploy.onnx_decoder import SAMOnnxDecoder
from mmsam.deploy.onnx_encoder import SAMOnnxEncoder


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', help='config file, or a model name known to mmsam.get_model')
    parser.add_argument('checkpoint', help='weights (.pth/.bin/.safetensors, any SAM layout)')
    parser.add_argument('--output', required=True, help='the decoder .onnx file to write')
    parser.add_argument('--encoder-output', help='also write the image encoder to this file')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 11; default 17)')
    parser.add_argument(
        '--return-single-mask',
        action='store_true',
        help='return only the best mask (faster upscaling of large images)',
    )
    parser.add_argument(
        '--use-stability-score',
        action='store_true',
        help='replace the predicted IoU by the stability score of the low-resolution masks',
    )
    parser.add_argument(
        '--return-extra-metrics',
        action='store_true',
        help='also return stability scores and areas of the upscaled masks',
    )
    parser.add_argument(
        '--gelu-approximate',
        action='store_true',
        help='use the tanh approximation of GELU (runtimes with a slow or missing Erf)',
    )
    parser.add_argument(
        '--hq-token-only',
        action='store_true',
        help="SAM-HQ: the decoder graph returns the HQ output alone (not SAM's + HQ)",
    )
    parser.add_argument(
        '--quantize-out',
        help='also write the decoder with uint8 weights (onnxruntime quantize_dynamic) here',
    )
    args = parser.parse_args(argv)
    if args.opset < 11:
        parser.error(f'--opset must be >= 11, got {args.opset}')
    return args


def load_model(model: str, checkpoint: str) -> torch.nn.Module:
    """Build a SAM from a config file or a model name and load ``checkpoint`` into it."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} does not exist')
    try:
        from mmsam.apis.model_zoo import get_model
    except ImportError as exc:
        raise ImportError(f'loading models needs mmsam.apis.model_zoo ({exc})') from exc
    net = get_model(model, pretrained=checkpoint, device='cpu')
    if not (hasattr(net, 'prompt_encoder') and hasattr(net, 'mask_decoder')):
        raise ValueError(
            f'{model!r} is a headless image encoder; exporting needs a full SAM model '
            '(prompt encoder and mask decoder)'
        )
    return net.eval()


def _report(name: str, path: str, diffs: dict) -> None:
    worst = ', '.join(f'{k} {v:.2e}' for k, v in diffs.items())
    print(f'{name}: {path} (onnxruntime vs PyTorch, max abs difference: {worst})')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        onnx_export.import_onnx()
        onnx_export.import_onnxruntime()
        model = load_model(args.model, args.checkpoint)
        if args.hq_token_only:
            if not hasattr(model.mask_decoder, 'hq_token_only'):
                raise ValueError(
                    f'--hq-token-only is a SAM-HQ option; {args.model!r} has a '
                    f'{type(model.mask_decoder).__name__}'
                )
            model.mask_decoder.hq_token_only = True
        options = dict(
            return_single_mask=args.return_single_mask,
            use_stability_score=args.use_stability_score,
            return_extra_metrics=args.return_extra_metrics,
            gelu_approximate=args.gelu_approximate,
        )
        onnx_export.export_decoder(model, args.output, opset=args.opset, **options)
        diffs = onnx_export.max_abs_difference(
            SAMOnnxDecoder(model, **options),
            args.output,
            onnx_export.decoder_dummy_inputs(model),
            DECODER_INPUT_NAMES,
        )
        _report('decoder', args.output, diffs)
        if args.quantize_out:
            onnx_export.quantize_dynamic_uint8(args.output, args.quantize_out)
            print(f'quantized decoder: {args.quantize_out}')
        if args.encoder_output:
            onnx_export.export_encoder(model, args.encoder_output, opset=args.opset)
            side = int(model.image_size)
            dummy = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
            diffs = onnx_export.max_abs_difference(
                SAMOnnxEncoder(model), args.encoder_output, (dummy,), (ENCODER_INPUT_NAME,)
            )
            _report('encoder', args.encoder_output, diffs)
    except (FileNotFoundError, ImportError, ValueError, RuntimeError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
