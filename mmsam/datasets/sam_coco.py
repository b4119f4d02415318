"""COCO and LVIS datasets for SAM evaluation: mmdet's, plus an audit log and detector prompts."""

import json
import logging
import os.path as osp
from collections import Counter, defaultdict
from typing import List, Optional, Tuple

import numpy as np
from mmdet.datasets import CocoDataset, LVISV1Dataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .annotation_audit import (
    AnnotationFileError,
    NoInstancesError,
    classify_annotation,
    find_missing_files,
    format_audit,
)
from .lvis_api import import_lvis


class PromptDatasetMixin:
    """Adds to an mmdet COCO-style dataset:

    * the audit: every annotation mmdet drops or ignores is counted by reason and
      reported in one log line (mmdet itself drops them silently); annotations
      without a usable segmentation are kept as ignored instead of crashing
      ``LoadAnnotations``; images whose file is missing are skipped (counted),
      so that one bad entry does not stop a long evaluation;
    * ``det_prompt_file``: a COCO results JSON (``[{"image_id", "category_id",
      "bbox": [x, y, w, h], "score"}, ...]``, as mmdet's ``CocoMetric`` writes
      ``*.bbox.json``) whose boxes become each image's ``det_prompts``
      (``bboxes (K, 4)`` XYXY, ``labels (K,)``, ``scores (K,)``) for
      :class:`DetectorBoxPrompts`; detections below ``det_score_thr`` are dropped;
    * ``metainfo['ann_file']``: the annotation file (joined with ``data_root``), which
      :class:`mmsam.evaluation.SAMCocoMetric` uses when its own ``ann_file`` is unset;
    * the classes come from the annotation file: SAM is class-agnostic, so every category
      the file declares is kept (in the file's order), whatever its name; an explicit
      ``metainfo=dict(classes=(...))`` keeps only those categories (a name the file does
      not declare is an error). ``metainfo['classes']`` and ``metainfo['cat_ids']`` then
      hold the names and ids of the kept categories, label ``i`` being
      ``metainfo['cat_ids'][i]``; the metrics map labels back to category ids through it;
    * a dataset that would prompt nothing (no instance left, or no detection used) raises
      :class:`~mmsam.datasets.annotation_audit.NoInstancesError` while it loads, with the
      audit's counts, instead of evaluating to ``nan``.

    Args:
        det_prompt_file (str, optional): Path of the results JSON (joined with
            ``data_root`` when relative).
        det_score_thr (float): Minimum detection score. Defaults to 0.
        check_files (bool): Skip images whose local file is missing. Defaults to True.
    """

    def __init__(
        self,
        *args,
        metainfo: Optional[dict] = None,
        det_prompt_file: Optional[str] = None,
        det_score_thr: float = 0.0,
        check_files: bool = True,
        **kwargs,
    ) -> None:
        self.det_prompt_file = det_prompt_file
        self.det_score_thr = float(det_score_thr)
        self.check_files = check_files
        self._audit: Counter = Counter()
        self._audit_api_seen = False
        classes = (metainfo or {}).get('classes')
        self._requested_classes = None if classes is None else tuple(classes)
        self._requested_palette = 'palette' in (metainfo or {})
        super().__init__(*args, metainfo=metainfo, **kwargs)
        # the metrics read the annotation file from here (``dataset_meta``), so that
        # overriding the dataset's data_root alone moves the evaluation too
        self._metainfo['ann_file'] = self.ann_file

    # -------------------------------------------------------------- audit
    def parse_data_info(self, raw_data_info: dict):
        api = getattr(self, 'coco', None) or getattr(self, 'lvis', None)
        if api is not None and not self._audit_api_seen:
            # the first image: mmdet has loaded the file's API and not parsed anything yet
            self._audit_api_seen = True
            imgs = api.imgs
            self._audit['unknown_image'] += sum(
                1 for a in api.anns.values() if a['image_id'] not in imgs
            )
            self._classes_from_file(list(api.cats.values()))
        img = raw_data_info['raw_img_info']
        anns = raw_data_info['raw_ann_info']
        if not anns:
            self._audit['empty_image'] += 1
        reasons = [classify_annotation(a, img['width'], img['height'], self.cat_ids) for a in anns]
        self._audit.update(r for r in reasons if r)
        data_info = super().parse_data_info(raw_data_info)
        # instances mmdet keeps, in order: those dropped above are skipped by mmdet too
        kept = [r for r in reasons if r not in ('ignore', 'outside', 'degenerate', 'category')]
        for instance, reason in zip(data_info['instances'], kept):
            if reason in ('no_segmentation', 'bad_polygon', 'bad_rle') or 'mask' not in instance:
                instance['ignore_flag'] = 1
                instance['mask'] = [[0.0] * 6]  # an empty polygon, as mmdet does
        return data_info

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        if self.check_files:
            missing = find_missing_files(data_list)
            if missing:
                shown = ', '.join(str(m['img_path']) for m in missing[:5])
                print_log(
                    f'{len(missing)} image files are missing and skipped (first: {shown})',
                    logger='current',
                    level=logging.WARNING,
                )
                self._audit['missing_file'] += len(missing)
                gone = {id(m) for m in missing}
                data_list = [d for d in data_list if id(d) not in gone]
        detections = None  # (number used, log line) with det_prompt_file
        if self.det_prompt_file is not None:
            detections = self._attach_detections(data_list)
        num_instances = sum(
            sum(1 for i in d['instances'] if not i.get('ignore_flag', 0)) for d in data_list
        )
        dropped = any(v for k, v in self._audit.items() if k != 'empty_image')
        summary = format_audit(
            f'{type(self).__name__}({self.ann_file})', self._audit, len(data_list), num_instances
        )
        if detections is not None and detections[0] == 0:
            raise NoInstancesError(
                f'{self.det_prompt_file}: nothing to prompt: {detections[1]} ({summary}; '
                f'classes: {self._describe_classes()})'
            )
        if detections is None and num_instances == 0:
            raise NoInstancesError(
                f'nothing to prompt: {summary} (classes: {self._describe_classes()})'
            )
        print_log(summary, logger='current', level=logging.WARNING if dropped else logging.INFO)
        return data_list

    # -------------------------------------------------------------- categories
    def _classes_from_file(self, categories: List[dict]) -> None:
        """Keep the file's categories (or those ``metainfo`` names) as the classes."""
        if self._requested_classes is None:
            kept = categories
        else:
            declared = {c['name'] for c in categories}
            unknown = [n for n in self._requested_classes if n not in declared]
            if unknown:
                shown = ', '.join(repr(c['name']) for c in categories[:20])
                more = f' and {len(categories) - 20} more' if len(categories) > 20 else ''
                raise AnnotationFileError(
                    f'{self.ann_file}: metainfo classes {unknown} are not categories of this '
                    f'file (its categories: {shown}{more})'
                )
            wanted = set(self._requested_classes)
            kept = [c for c in categories if c['name'] in wanted]
        self.cat_ids = [c['id'] for c in kept]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        names = tuple(c['name'] for c in kept)
        self._metainfo['classes'] = names
        self._metainfo['cat_ids'] = list(self.cat_ids)
        if not self._requested_palette:
            self._metainfo['palette'] = self._palette_for(names)

    def _palette_for(self, names: tuple) -> Optional[list]:
        """The class's palette colours of these names, or ``None`` (mmdet's visualizer then
        draws random colours) when a name is not one of the class's own."""
        own = list(type(self).METAINFO.get('classes') or ())
        palette = type(self).METAINFO.get('palette')
        if not palette or not all(n in own for n in names):
            return None
        return [palette[own.index(n)] for n in names]

    def _describe_classes(self) -> str:
        if not self._audit_api_seen:
            return 'not read: the file lists no image'
        names = self._metainfo.get('classes') or ()
        shown = ', '.join(repr(n) for n in names[:10])
        more = f' and {len(names) - 10} more' if len(names) > 10 else ''
        how = 'from metainfo' if self._requested_classes is not None else 'from the file'
        return f'{len(names)} {how}: {shown}{more}' if names else f'none {how}'

    @property
    def audit(self) -> Counter:
        """Counts of what was dropped or ignored, by reason (see ``DROP_REASONS``)."""
        return Counter(self._audit)

    # -------------------------------------------------------------- detections
    def _attach_detections(self, data_list: List[dict]) -> Tuple[int, str]:
        """Attach each image's detections; returns how many are used and the log line."""
        path = self.det_prompt_file
        if self.data_root and not osp.isabs(path) and '://' not in path:
            path = osp.join(self.data_root, path)
        with get_local_path(path, backend_args=self.backend_args) as local_path:
            with open(local_path) as f:
                dets = json.load(f)
        if not isinstance(dets, list):
            raise ValueError(
                f'det_prompt_file {path!r} must hold a COCO results list '
                '[{"image_id", "category_id", "bbox", "score"}, ...]'
            )
        by_image = defaultdict(list)
        skipped = Counter()
        for i, det in enumerate(dets):
            try:
                x, y, w, h = (float(v) for v in det['bbox'])
                cat, score, img_id = det['category_id'], float(det['score']), det['image_id']
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f'det_prompt_file {path!r}: entry {i} is not a COCO detection '
                    f'(needs image_id, category_id, bbox [x, y, w, h], score): {exc}'
                ) from exc
            if cat not in self.cat2label:
                skipped['unknown category'] += 1
            elif w <= 0 or h <= 0:
                skipped['empty box'] += 1
            elif score < self.det_score_thr:
                skipped['below det_score_thr'] += 1
            else:
                by_image[img_id].append((x, y, x + w, y + h, self.cat2label[cat], score))
        known = {d['img_id'] for d in data_list}
        skipped['unknown image'] = sum(len(v) for k, v in by_image.items() if k not in known)
        for info in data_list:
            rows = by_image.get(info['img_id'], [])
            arr = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
            info['det_prompts'] = dict(
                bboxes=arr[:, :4].astype(np.float32),
                labels=arr[:, 4].astype(np.int64),
                scores=arr[:, 5].astype(np.float32),
            )
        used = sum(len(d['det_prompts']['scores']) for d in data_list)
        detail = ', '.join(f'{v} ({k})' for k, v in skipped.items() if v)
        summary = f'{used} of {len(dets)} detections used as box prompts' + (
            f'; skipped: {detail}' if detail else ''
        )
        print_log(
            f'{path}: {summary}',
            logger='current',
            level=logging.WARNING if detail else logging.INFO,
        )
        return used, summary


@DATASETS.register_module()
class SAMCocoDataset(PromptDatasetMixin, CocoDataset):
    """mmdet's ``CocoDataset`` with the audit log and optional detector prompts.

    See :class:`PromptDatasetMixin` for the extra arguments.
    """


@DATASETS.register_module()
class SAMLVISV1Dataset(PromptDatasetMixin, LVISV1Dataset):
    """mmdet's ``LVISV1Dataset`` (needs the ``lvis`` package, see
    :mod:`mmsam.datasets.lvis_api`) with the audit log and optional detector prompts.
    See :class:`PromptDatasetMixin`.
    """

    def load_data_list(self) -> List[dict]:
        import_lvis()  # an ImportError that says what to install, before mmdet's import
        return super().load_data_list()
