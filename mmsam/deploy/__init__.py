"""Deploy SAM with ONNX: export the decoder and the encoder, serve them with onnxruntime.

``ONNXPredictor`` (the runtime) needs numpy, PIL and onnxruntime only; the
exporters (``export_decoder``, ``export_encoder``, ``quantize_dynamic_uint8``,
``SAMOnnxDecoder``, ``SAMOnnxEncoder``) need torch and are imported on first use.
"""

import importlib

from .onnx_deps import INSTALL_HINT, import_onnx, import_onnxruntime
from .onnx_predictor import ONNXPredictor
from .onnx_session import CheckedSession

_TORCH_SIDE = {
    'export_decoder': 'export',
    'export_encoder': 'export',
    'quantize_dynamic_uint8': 'export',
    'SAMOnnxDecoder': 'onnx_decoder',
    'SAMOnnxEncoder': 'onnx_encoder',
}


def __getattr__(name: str):
    if name in _TORCH_SIDE:
        module = importlib.import_module(f'.{_TORCH_SIDE[name]}', __name__)
        return getattr(module, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'CheckedSession',
    'INSTALL_HINT',
    'ONNXPredictor',
    'import_onnx',
    'import_onnxruntime',
    *_TORCH_SIDE,
]
