"""An onnxruntime session whose feeds are checked against the graph's inputs.

Torch-free. A wrong name, rank, size or dtype is refused with a ``ValueError``
naming the input, instead of onnxruntime's stack trace.
"""

import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .onnx_deps import import_onnxruntime

#: ONNX tensor element types as onnxruntime spells them -> numpy dtypes.
_ORT_DTYPES = {
    'tensor(float)': np.dtype(np.float32),
    'tensor(float16)': np.dtype(np.float16),
    'tensor(double)': np.dtype(np.float64),
    'tensor(int64)': np.dtype(np.int64),
    'tensor(int32)': np.dtype(np.int32),
    'tensor(uint8)': np.dtype(np.uint8),
    'tensor(bool)': np.dtype(np.bool_),
}


class CheckedSession:
    """Load an ONNX file into onnxruntime and run it with checked inputs.

    Args:
        path (str | os.PathLike): The ``.onnx`` file.
        providers (Sequence[str], optional): Execution providers. Defaults to
            ``['CPUExecutionProvider']``.

    Attributes:
        path (str): The file.
        metadata (dict[str, str]): The graph's ``metadata_props``.
        input_shapes (dict[str, tuple]): Declared shapes (``None`` or a name for a
            dynamic axis).
        input_dtypes (dict[str, np.dtype]): Declared dtypes.
        output_names (list[str]): Output names, in order.
    """

    def __init__(
        self, path: Union[str, os.PathLike], providers: Optional[Sequence[str]] = None
    ) -> None:
        ort = import_onnxruntime()
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f'ONNX file not found: {self.path}')
        try:
            self.session = ort.InferenceSession(
                self.path, providers=list(providers or ['CPUExecutionProvider'])
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f'{self.path} is not a loadable ONNX model: {exc}') from exc
        self.metadata: Dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_shapes = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        self.input_dtypes = {i.name: _ORT_DTYPES.get(i.type) for i in self.session.get_inputs()}
        self.output_names: List[str] = [o.name for o in self.session.get_outputs()]

    def check_feeds(self, feeds: Dict[str, np.ndarray]) -> None:
        """Raise ``ValueError`` naming the first feed that does not fit the graph."""
        missing = [name for name in self.input_shapes if name not in feeds]
        unknown = [name for name in feeds if name not in self.input_shapes]
        if missing or unknown:
            raise ValueError(
                f'{os.path.basename(self.path)} takes inputs {list(self.input_shapes)}; '
                f'missing {missing}, unknown {unknown}'
            )
        for name, value in feeds.items():
            if not isinstance(value, np.ndarray):
                raise ValueError(
                    f'input {name!r} must be a numpy array, got {type(value).__name__}'
                )
            expected = self.input_dtypes[name]
            if expected is not None and value.dtype != expected:
                raise ValueError(f'input {name!r} must have dtype {expected}, got {value.dtype}')
            shape = self.input_shapes[name]
            fits = len(shape) == value.ndim and all(
                not isinstance(d, int) or d == s for d, s in zip(shape, value.shape)
            )
            if not fits:
                declared = tuple(d if isinstance(d, int) else str(d) for d in shape)
                raise ValueError(
                    f'input {name!r} must have shape {declared} '
                    f'(names are free sizes), got {value.shape}'
                )

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Check the feeds, run the graph and return its outputs by name."""
        self.check_feeds(feeds)
        outputs = self.session.run(None, feeds)
        return dict(zip(self.output_names, outputs))
