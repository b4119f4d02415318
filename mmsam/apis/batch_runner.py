"""Run a per-image job over many images: progress bar, resume, and a report of failures.

Shared by the AMG folder job and ``auto_annotate``: an image whose output already
exists is skipped (so an interrupted run resumes), an image that cannot be read or
processed is recorded and the run goes on; the caller reports the failures and exits
non-zero.
"""

import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple


@dataclass
class BatchReport:
    """What a batch run did.

    Attributes:
        done (list[str]): Images processed in this run.
        skipped (list[str]): Images whose output already existed.
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
            f'{len(self.done)} processed, {len(self.skipped)} skipped (output exists), '
            f'{len(self.failed)} failed'
        ]
        lines += [f'  FAILED {path}: {reason}' for path, reason in self.failed]
        return '\n'.join(lines)


class _Progress:
    """tqdm when installed, else mmengine's ProgressBar, else nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = None
        self._tqdm = False
        if not enabled or total <= 1:
            return
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit='img', file=sys.stderr)
            self._tqdm = True
        except ImportError:
            from mmengine.utils import ProgressBar

            self._bar = ProgressBar(total, file=sys.stderr)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def close(self) -> None:
        if self._tqdm:
            self._bar.close()
        elif self._bar is not None:
            sys.stderr.write('\n')


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
    report = BatchReport()
    bar = _Progress(len(images), desc, progress)
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
