"""Run a per-image job over many images: listing, resume keys, progress, failures.

Shared by the folder jobs of the command line (``mmsam amg``, ``mmsam annotate``):

* the images are listed once, leaving out anything under the output folder (which
  may lie inside the input folder), and an empty listing is an error;
* an image whose output exists *and was made from the same image file with the same
  settings* (:mod:`mmsam.utils.fingerprints`, :func:`model_fingerprint`) is
  skipped, so an interrupted run resumes and a rerun with other settings redoes it;
* an image that cannot be read or processed is recorded and the run goes on; the
  caller reports the failures and exits non-zero.
"""

import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..apis.image_io import IMAGE_SUFFIXES, list_images


@dataclass
class BatchReport:
    """What a batch run did.

    Attributes:
        done (list[str]): Images processed in this run.
        skipped (list[str]): Images done by an earlier run with the same settings.
        failed (list[tuple[str, str]]): ``(image, reason)`` for images that failed.
    """

    done: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no image failed."""
        return not self.failed

    def summary(self) -> str:
        """One line of counts, then one line per failed image."""
        lines = [
            f'{len(self.done)} processed, {len(self.skipped)} skipped (done by an earlier run), '
            f'{len(self.failed)} failed'
        ]
        lines += [f'  FAILED {path}: {reason}' for path, reason in self.failed]
        return '\n'.join(lines)


def run_over_images(
    images: Sequence[str],
    process: Callable[[str], None],
    is_done: Optional[Callable[[str], bool]] = None,
    desc: str = 'images',
    progress: bool = True,
) -> BatchReport:
    """Call ``process(image)`` for each image, going on past failures.

    Args:
        images (Sequence[str]): Image paths.
        process (Callable[[str], None]): Does the work for one image and writes its
            output (whole or not at all).
        is_done (Callable[[str], bool], optional): Whether an image's output exists;
            such images are skipped.
        desc (str): Label of the progress bar.
        progress (bool): Show a progress bar (for more than one image).

    Returns:
        BatchReport: What was processed, skipped and failed (with the reason).
    """
    from tqdm import tqdm  # the one progress bar of mmsam (a runtime requirement)

    report = BatchReport()
    show = progress and len(images) > 1
    bar = tqdm(total=len(images), desc=desc, unit='img', file=sys.stderr, disable=not show)
    try:
        for path in images:
            if is_done is not None and is_done(path):
                report.skipped.append(path)
            else:
                try:
                    process(path)
                    report.done.append(path)
                except KeyboardInterrupt:
                    raise
                except Exception as err:  # noqa: BLE001  (reported, the batch goes on)
                    report.failed.append((path, f'{type(err).__name__}: {err}'))
            bar.update()
    finally:
        bar.close()
    return report


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def list_job_images(inputs: str, out_dir: str) -> List[str]:
    """The images a folder job reads: :func:`list_images` less the output folder's files.

    Args:
        inputs (str): An image file or a folder (searched recursively).
        out_dir (str): The job's output folder; when it lies inside ``inputs`` its
            files (the overlays of an earlier run, ...) are never read as input.

    Returns:
        list[str]: Sorted image paths.

    Raises:
        FileNotFoundError: ``inputs`` does not exist.
        ValueError: ``out_dir`` is the input folder itself, or no image was found.
    """
    images = list_images(inputs)
    if not osp.isdir(inputs):
        return images
    out = osp.realpath(out_dir)
    if osp.realpath(inputs) == out:
        raise ValueError(
            f'the output folder {out_dir} is the input folder: give another output folder '
            '(a sub-folder is fine; it is left out of the input)'
        )
    kept = [p for p in images if not _is_within(osp.realpath(p), out)]
    if not kept:
        where = f' (outside the output folder {out_dir})' if images else ''
        raise ValueError(
            f'no images found in {inputs}{where}; looked for {", ".join(IMAGE_SUFFIXES)} '
            'files, in sub-folders too'
        )
    return kept


def model_fingerprint(model: Any) -> str:
    """A hash of a model's state dict: every key, dtype, shape and value.

    Keys resume caches on what the weights *are*, whatever file, URL or object they
    came from. Costs one pass over the weights (about a second per GB).

    Args:
        model (nn.Module): The model.

    Returns:
        str: A hex digest.
    """
    # the embedding cache's and the embedding store's digest (imported here: the
    # command line's parser stays free of torch)
    from ..models.utils.embedding_cache import weights_digest

    return weights_digest(model)
