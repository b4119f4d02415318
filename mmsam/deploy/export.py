"""Export SAM's decoder and encoder to ONNX files, and quantize them."""

import os
import shutil
import tempfile
import warnings
from typing import Dict, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from . import graph_spec as meta
from .graph_spec import DECODER_INPUT_NAMES, ENCODER_INPUT_NAME, ENCODER_OUTPUT_NAME
from .onnx_decoder import SAMOnnxDecoder
from .onnx_deps import import_onnx, import_onnxruntime
from .onnx_encoder import SAMOnnxEncoder
from .onnx_session import CheckedSession

PathLike = Union[str, os.PathLike]

#: Above this many bytes of weights a graph is saved with its tensors in ``<file>.data``
#: (protobuf cannot hold 2 GiB; ViT-H's encoder is 2.5 GB).
EXTERNAL_DATA_BYTES = 1_800_000_000


def decoder_dummy_inputs(model: nn.Module, num_points: int = 5) -> Tuple[torch.Tensor, ...]:
    """Example decoder inputs for ``model`` (deterministic; labels cover -1..3).

    Returns:
        tuple[Tensor, ...]: in the order of :data:`DECODER_INPUT_NAMES`.
    """
    gen = torch.Generator().manual_seed(0)
    embed_h, embed_w = model.prompt_encoder.image_embedding_size
    channels = model.embedding_dims
    side = float(model.image_size)
    labels = torch.arange(num_points, dtype=torch.float32) % 5 - 1
    return (
        torch.randn(1, channels, embed_h, embed_w, generator=gen),
        torch.rand(1, num_points, 2, generator=gen) * side,
        labels[None],
        torch.randn(1, 1, 4 * embed_h, 4 * embed_w, generator=gen),
        torch.tensor([1.0]),
        torch.tensor([side * 1.5, side * 2.2]),
    )


def _onnx_export(
    module: nn.Module,
    inputs: Tuple[torch.Tensor, ...],
    output: PathLike,
    input_names,
    output_names,
    dynamic_axes: Dict[str, Dict[int, str]],
    opset: int,
    props: Dict[str, object],
) -> str:
    """Trace ``module`` to ``output`` (written whole or not at all) with metadata."""
    onnx = import_onnx()
    output = os.fspath(output)
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    tmp_dir = tempfile.mkdtemp(prefix='.onnx-export-', dir=folder)
    try:
        traced = os.path.join(tmp_dir, 'traced.onnx')
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            warnings.filterwarnings('ignore', category=UserWarning)
            warnings.filterwarnings('ignore', category=DeprecationWarning)
            try:
                torch.onnx.export(
                    module,
                    inputs,
                    traced,
                    dynamo=False,  # the TorchScript exporter: no onnxscript needed
                    export_params=True,
                    opset_version=opset,
                    do_constant_folding=True,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=dynamic_axes,
                )
            except Exception as exc:  # the exporter raises many types; keep the cause
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
                raise RuntimeError(
                    f'torch.onnx.export could not export {type(module).__name__} to '
                    f'{output} (opset {opset}): {type(exc).__name__}: {first_line}'
                ) from exc
        proto = onnx.load(traced)
        for key, value in meta.encode_metadata(props).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        final = os.path.join(tmp_dir, os.path.basename(output))
        external = weight_bytes > EXTERNAL_DATA_BYTES
        data_name = os.path.basename(output) + '.data'
        onnx.save_model(
            proto,
            final,
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=data_name,
        )
        if external:
            os.replace(os.path.join(tmp_dir, data_name), os.path.join(folder, data_name))
        os.replace(final, output)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return output


def export_decoder(
    model: nn.Module,
    output: PathLike,
    opset: int = 17,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    gelu_approximate: bool = False,
) -> str:
    """Export the prompt encoder + mask decoder + upscaling as one ONNX graph.

    The graph has the official ``SamOnnxModel``'s inputs and outputs (see
    :class:`SAMOnnxDecoder`), a dynamic number of points, and mmsam metadata.

    Args:
        model (mmsam.models.SAM): The model.
        output (str | os.PathLike): The ``.onnx`` file to write.
        opset (int): ONNX opset (>= 11). Defaults to 17.
        return_single_mask, use_stability_score, return_extra_metrics,
        gelu_approximate: see :class:`SAMOnnxDecoder`.

    Returns:
        str: ``output``.
    """
    wrapper = SAMOnnxDecoder(
        model,
        return_single_mask=return_single_mask,
        use_stability_score=use_stability_score,
        return_extra_metrics=return_extra_metrics,
        gelu_approximate=gelu_approximate,
    )
    props = {
        meta.GRAPH: 'decoder',
        meta.IMAGE_SIZE: wrapper.image_size,
        meta.MASK_THRESHOLD: wrapper.mask_threshold,
        meta.NUM_MASK_TOKENS: int(
            getattr(model.mask_decoder, 'num_fused_outputs', model.mask_decoder.num_mask_tokens)
        ),
        meta.RETURN_SINGLE_MASK: bool(return_single_mask),
        meta.USE_STABILITY_SCORE: bool(use_stability_score),
        meta.RETURN_EXTRA_METRICS: bool(return_extra_metrics),
    }
    if hasattr(model.mask_decoder, 'hq_token_only'):  # SAM-HQ: fixed in the graph
        props[meta.HQ_TOKEN_ONLY] = bool(model.mask_decoder.hq_token_only)
    dynamic_axes = {'point_coords': {1: 'num_points'}, 'point_labels': {1: 'num_points'}}
    return _onnx_export(
        wrapper,
        decoder_dummy_inputs(model),
        output,
        DECODER_INPUT_NAMES,
        wrapper.output_names,
        dynamic_axes,
        opset,
        props,
    )


def export_encoder(model: nn.Module, output: PathLike, opset: int = 17) -> str:
    """Export the image encoder: preprocessed ``(B, 3, S, S)`` to ``(B, 256, S/16, S/16)``.

    The graph's metadata holds the input side and the data preprocessor's mean and
    std, which the runtime uses to prepare images. Weights above
    :data:`EXTERNAL_DATA_BYTES` go to ``<output>.data`` next to the file.

    Args:
        model (mmsam.models.SAM): The model.
        output (str | os.PathLike): The ``.onnx`` file to write.
        opset (int): ONNX opset. Defaults to 17.

    Returns:
        str: ``output``.
    """
    wrapper = SAMOnnxEncoder(model).eval()
    preprocessor = model.data_preprocessor
    props = {
        meta.GRAPH: 'encoder',
        meta.IMAGE_SIZE: wrapper.image_size,
        meta.PIXEL_MEAN: [float(v) for v in preprocessor.mean.flatten()],
        meta.PIXEL_STD: [float(v) for v in preprocessor.std.flatten()],
    }
    if wrapper.input_size != wrapper.image_size:  # EfficientViT-SAM's L models: 512 px
        props[meta.ENCODER_INPUT_SIZE] = wrapper.input_size
    side = wrapper.input_size
    dummy = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    return _onnx_export(
        wrapper,
        (dummy,),
        output,
        (ENCODER_INPUT_NAME,),
        (ENCODER_OUTPUT_NAME,),
        {},
        opset,
        props,
    )


def quantize_dynamic_uint8(source: PathLike, output: PathLike) -> str:
    """Quantize an exported graph's weights to uint8 (onnxruntime ``quantize_dynamic``).

    The settings are the official export script's (per-tensor, full range, QUInt8).
    The result is written whole or not at all and keeps the mmsam metadata.

    Args:
        source (str | os.PathLike): An ``.onnx`` file written by this module.
        output (str | os.PathLike): The quantized file to write.

    Returns:
        str: ``output``.
    """
    onnx = import_onnx()
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, output = os.fspath(source), os.fspath(output)
    if not os.path.isfile(source):
        raise FileNotFoundError(f'ONNX file to quantize not found: {source}')
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix='.onnx-quant-', dir=folder)
    try:
        tmp = os.path.join(tmp_dir, 'quantized.onnx')
        quantize_dynamic(
            model_input=source,
            model_output=tmp,
            per_channel=False,
            reduce_range=False,
            weight_type=QuantType.QUInt8,
        )
        kept = {p.key: p.value for p in onnx.load(source, load_external_data=False).metadata_props}
        proto = onnx.load(tmp)
        have = {p.key for p in proto.metadata_props}
        for key, value in kept.items():
            if key not in have:
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
        onnx.save_model(proto, tmp)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return output


def max_abs_difference(
    module: nn.Module, path: PathLike, inputs: Tuple[torch.Tensor, ...], input_names
) -> Dict[str, float]:
    """Run ``module`` (PyTorch) and the graph at ``path`` (onnxruntime) on ``inputs``.

    Returns:
        dict[str, float]: the largest absolute difference of each output, by name.
    """
    session = CheckedSession(path)
    with torch.no_grad():
        expected = module(*inputs)
    if isinstance(expected, torch.Tensor):
        expected = (expected,)
    feeds = {name: t.detach().cpu().numpy() for name, t in zip(input_names, inputs)}
    got = session.run(feeds)
    return {
        name: float(np.abs(got[name].astype(np.float64) - e.cpu().numpy()).max(initial=0.0))
        for name, e in zip(session.output_names, expected)
    }
