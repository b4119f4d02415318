"""An on-disk cache of image embeddings for training with a frozen image encoder.

Each entry is the embedding of one preprocessed model input, stored in float16 and
written atomically (a temporary file renamed into place), under a name made of the
SHA-256 of the input's bytes and of the encoder's weights. A flipped image is a
different input and so a different entry; changing the encoder's weights changes
every name, so stale entries are never read.
"""

import hashlib
import os
import os.path as osp
import pickle
from typing import Callable, List

import torch
import torch.nn as nn

from ...utils.checkpoint_io import atomic_torch_save


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        digest.update(_raw_bytes(tensor))
    return digest.hexdigest()


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f'{tensor.dtype}:{tuple(tensor.shape)};'.encode())
    digest.update(_raw_bytes(tensor))
    return digest.hexdigest()


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's bytes in memory order, whatever its dtype (bfloat16 included) and
    rank (0-d ones, such as BatchNorm's ``num_batches_tracked``, included)."""
    data = tensor.detach().cpu().contiguous().reshape(-1)
    return data.view(torch.uint8).numpy().tobytes() if data.numel() else b''


class EmbeddingCache:
    """Image embeddings on disk, computed once per input and encoder.

    Args:
        cache_dir (str): Folder of the entries (created if missing).
        dtype (str): Storage dtype, ``'float16'`` (default) or ``'float32'``.
    """

    def __init__(self, cache_dir: str, dtype: str = 'float16') -> None:
        if dtype not in ('float16', 'float32'):
            raise ValueError(f'dtype must be float16 or float32, got {dtype!r}')
        self.cache_dir = str(cache_dir)
        self.dtype = getattr(torch, dtype)
        self.hits = 0
        self.misses = 0

    def path(self, input_key: str, weights_key: str) -> str:
        """File of the entry for an input digest and an encoder digest."""
        name = hashlib.sha256(f'{input_key}:{weights_key}'.encode()).hexdigest()
        return osp.join(self.cache_dir, name[:2], f'{name}.pt')

    def get(
        self,
        inputs: torch.Tensor,
        weights_key: str,
        compute: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Embeddings of a batch, reading cached entries and computing the others.

        Args:
            inputs (Tensor): ``(B, 3, S, S)`` preprocessed images.
            weights_key (str): Digest of the encoder (:func:`weights_digest`).
            compute (callable): Maps ``(K, 3, S, S)`` inputs to ``(K, C, h, w)``
                float embeddings.

        Returns:
            Tensor: ``(B, C, h, w)`` float32 on ``inputs``' device.
        """
        paths = [self.path(tensor_digest(image), weights_key) for image in inputs]
        found: List = []
        for p in paths:
            entry = None
            if osp.isfile(p):
                try:
                    entry = torch.load(p, map_location='cpu', weights_only=True)
                except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
                    entry = None  # a damaged entry is computed again and replaced
            found.append(entry)
        missing = [i for i, e in enumerate(found) if e is None]
        self.hits += len(paths) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = compute(inputs[missing])
            for i, emb in zip(missing, computed):
                stored = emb.detach().to('cpu', self.dtype).contiguous()
                os.makedirs(osp.dirname(paths[i]), exist_ok=True)
                atomic_torch_save(stored, paths[i])
                found[i] = stored
        return torch.stack([e.float() for e in found]).to(inputs.device)
