"""``mmsam embed``: the image embeddings of a folder, written to an embedding store.

For each image ``<rel>`` (its path relative to the input folder) it writes
``<out>/embeddings/<rel>.safetensors`` (see :mod:`mmsam.apis.embedding_store`), then
``<out>/index.json`` from all of them. Images are encoded ``--batch-size`` at a time.

Resume: ``<out>/.resume/<rel>.key`` records the encoder's weights digest, the dtype and
the image file's size and time stamp; an image whose key matches and whose embedding
exists is skipped, any other is redone. The key is written after the embedding, so it
marks a finished image. A store written by another encoder is refused (its index names
the model): embeddings of two encoders never mix in one store.

Runs on many processes with ``--launcher`` (:mod:`.distributed`): each rank embeds its
share, rank 0 writes the index after all ranks are done.
"""

import argparse
import os
import os.path as osp
from dataclasses import dataclass
from typing import Iterator, List, Tuple

import numpy as np

from ..apis.embedding_store import (
    DTYPES,
    INDEX_FILE,
    EmbeddingStore,
    EmbeddingStoreError,
    build_index,
    embedding_path,
    encoder_digest,
    resume_key,
    resume_key_path,
    write_embeddings,
)
from ..apis.image_io import load_image
from ..utils.atomic_file import atomic_write, prepare_output_dir
from .common import check_device, load_sam, print_report
from .distributed import close_launcher, init_launcher, run_on_main_after_all, shard
from .folder_jobs import BatchReport, list_job_images


@dataclass
class EmbedResult(BatchReport):
    """A :class:`BatchReport` plus the index written (rank 0) and how many images it lists."""

    index_file: str = ''
    num_images: int = 0


def _check_store_encoder(out_dir: str, encoder_sha256: str) -> None:
    """Refuse to add to a store that another encoder wrote."""
    try:
        store = EmbeddingStore.existing(out_dir)
    except EmbeddingStoreError as err:
        raise EmbeddingStoreError(f'{err}; give another --out') from err
    if store is not None and store.encoder_sha256 != encoder_sha256:
        raise EmbeddingStoreError(
            f'{out_dir} holds embeddings of model {store.model} (another image encoder): '
            'give another --out for this model'
        )


def embed_folder(
    model,
    inputs: str,
    out_dir: str,
    model_name: str,
    batch_size: int = 1,
    dtype: str = 'float16',
    resume: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> EmbedResult:
    """Embed an image file or a folder (recursively) into a store.

    Args:
        model (mmsam.models.SAM): The model (its image encoder is run).
        inputs (str): An image file or a folder.
        out_dir (str): The store folder (may lie inside the input folder, not be it).
        model_name (str): The model's name, written with each embedding.
        batch_size (int): Images per encoder call.
        dtype (str): ``'float16'`` or ``'float32'``.
        resume (bool): Skip images embedded by an earlier run (module docstring).
        rank (int): This process's rank (see :mod:`.distributed`).
        world_size (int): The number of processes.

    Returns:
        EmbedResult: This rank's processed, skipped and failed images; on rank 0 also
        the index file and the number of images it lists.
    """
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
    images = list_job_images(inputs, out_dir)
    prepare_output_dir(out_dir)
    root = inputs if osp.isdir(inputs) else osp.dirname(osp.abspath(inputs))
    sha = encoder_digest(model)
    _check_store_encoder(out_dir, sha)
    result = EmbedResult()

    def rel(path: str) -> str:
        return osp.relpath(path, root).replace(os.sep, '/')

    def is_done(path: str) -> bool:
        if not osp.isfile(embedding_path(out_dir, rel(path))):
            return False
        try:
            with open(resume_key_path(out_dir, rel(path)), encoding='utf-8') as f:
                return f.read() == resume_key(sha, dtype, path)
        except OSError:
            return False

    todo = []
    for path in shard(images, rank, world_size):
        if resume and is_done(path):
            result.skipped.append(path)
        else:
            todo.append(path)
    loaded: List[str] = []

    def named_images() -> Iterator[Tuple[str, np.ndarray]]:
        for path in todo:
            try:
                image = load_image(path)
            except (OSError, ValueError) as err:
                result.failed.append((path, f'{type(err).__name__}: {err}'))
                continue
            if osp.exists(resume_key_path(out_dir, rel(path))):
                os.remove(resume_key_path(out_dir, rel(path)))  # unfinished until rewritten
            loaded.append(path)
            yield rel(path), image

    written = write_embeddings(model, named_images(), out_dir, model_name, batch_size, dtype, sha)
    for i, _ in enumerate(written):
        with atomic_write(resume_key_path(out_dir, rel(loaded[i])), 'w') as f:
            f.write(resume_key(sha, dtype, loaded[i]))
        result.done.append(loaded[i])

    index = run_on_main_after_all(world_size, rank, lambda: build_index(out_dir))
    if index is not None:
        result.index_file = osp.join(out_dir, INDEX_FILE)
        result.num_images = len(index['images'])
    return result


def run(args: argparse.Namespace) -> int:
    """``mmsam embed``: check the folders, load the model, run :func:`embed_folder`.

    Returns:
        int: The exit code (1 when an image of this process failed).
    """
    list_job_images(args.input, args.out)
    prepare_output_dir(args.out, 'store folder')
    rank, world_size = init_launcher(args.launcher, args.local_rank)
    try:
        device = check_device(args.device)
        sam = load_sam(args, device)
        result = embed_folder(
            sam,
            args.input,
            args.out,
            model_name=args.model,
            batch_size=args.batch_size,
            dtype=args.dtype,
            resume=not args.overwrite,
            rank=rank,
            world_size=world_size,
        )
    finally:
        close_launcher(world_size)
    if result.index_file:
        print(f'{result.index_file}: {result.num_images} images')
    return print_report(result)
