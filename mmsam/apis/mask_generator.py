"""Automatic mask generation: prompt SAM with a grid of points and keep the good masks.

Gives the same records as the official ``SamAutomaticMaskGenerator`` (same masks, same
order, same scores), computed with less work: masks are filtered by predicted IoU
before they are upscaled, upscaling is done in chunks with the stability score,
thresholding and boxes computed on the fly, and run-length encoding is vectorised.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchvision.ops import batched_nms, box_area

from ..structures import (
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    stability_counts,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
    upscale_mask_logits,
)
from ..structures.rle import (
    mask_to_rle,
    rle_area,
    rle_to_mask,
    uncompressed_to_coco_rle,
)
from ..structures.transforms import apply_coords, image_to_rgb_uint8
from .batch_predictor import ImageEmbedding, check_batch_size, encode_images
from .predictor import SAMPredictor

OUTPUT_MODES = ('binary_mask', 'uncompressed_rle', 'coco_rle')


class _MaskSet:
    """Per-mask fields of equal length: tensors (first dim) and a list of RLEs."""

    def __init__(self, **fields) -> None:
        self.fields: Dict[str, Any] = fields

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.fields[key] = value

    def __len__(self) -> int:
        return len(self.fields['iou_preds'])

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the entries selected by a bool mask or an index tensor (in that order)."""
        index = keep.nonzero()[:, 0] if keep.dtype == torch.bool else keep
        index_list = index.tolist()
        for key, value in self.fields.items():
            if isinstance(value, list):
                self.fields[key] = [value[i] for i in index_list]
            else:
                self.fields[key] = value[index.to(value.device)]

    @classmethod
    def cat(cls, parts: List['_MaskSet'], keys: Sequence[str]) -> '_MaskSet':
        fields = {}
        for key in keys:
            values = [p[key] for p in parts]
            if key == 'rles':
                fields[key] = [r for v in values for r in v]
            else:
                fields[key] = torch.cat(values)
        return cls(**fields)


class AutomaticMaskGenerator:
    """Every mask in an image, as SA-1B-style records (the official generator's output).

    Args:
        model_or_predictor (mmsam.models.SAM | SAMPredictor): The model, or a predictor
            around it.
        points_per_side (int, optional): Grid points per image side
            (``points_per_side ** 2`` prompts). Exclusive with ``point_grids``.
        points_per_batch (int): Prompts decoded together (memory vs. speed; results do
            not depend on it).
        pred_iou_thresh (float): Keep masks whose predicted IoU is above this.
        stability_score_thresh (float): Keep masks whose stability score is at least this.
        stability_score_offset (float): Logit offset of the stability score.
        box_nms_thresh (float): Box IoU of the NMS within a crop.
        crop_n_layers (int): Extra layers of crops (layer ``i`` has ``(2 ** i) ** 2``).
        crop_nms_thresh (float): Box IoU of the NMS between crops.
        crop_overlap_ratio (float): Overlap of the first-layer crops (fraction of the
            short side).
        crop_n_points_downscale_factor (int): Points per side in layer ``i`` are
            divided by this to the power ``i``.
        point_grids (list[np.ndarray], optional): ``(K, 2)`` grids in ``[0, 1]`` per
            layer, instead of ``points_per_side``.
        min_mask_region_area (int): If > 0, fill holes and remove islands smaller than
            this (OpenCV), then NMS again.
        output_mode (str): ``'binary_mask'``, ``'uncompressed_rle'`` or ``'coco_rle'``.
        upscale_chunk (int): Masks upscaled to full size at once (memory only; fewer
            for huge images so that a chunk of logits stays near 1 GiB).
    """

    def __init__(
        self,
        model_or_predictor: Union[torch.nn.Module, SAMPredictor],
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = 'binary_mask',
        upscale_chunk: int = 32,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError('give exactly one of points_per_side and point_grids')
        if int(crop_n_layers) < 0:
            raise ValueError(f'crop_n_layers must be >= 0, got {crop_n_layers}')
        if points_per_side is not None:
            if int(points_per_side) < 1:
                raise ValueError(f'points_per_side must be >= 1, got {points_per_side}')
            self.point_grids = build_all_layer_point_grids(
                int(points_per_side), int(crop_n_layers), int(crop_n_points_downscale_factor)
            )
        else:
            self.point_grids = [self._check_grid(g, i) for i, g in enumerate(point_grids)]
            if len(self.point_grids) < crop_n_layers + 1:
                raise ValueError(
                    f'point_grids needs one grid per crop layer ({crop_n_layers + 1}), '
                    f'got {len(self.point_grids)}'
                )
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f'output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}')
        if int(points_per_batch) < 1:
            raise ValueError(f'points_per_batch must be >= 1, got {points_per_batch}')
        if isinstance(model_or_predictor, SAMPredictor):
            self.predictor = model_or_predictor
        else:
            self.predictor = SAMPredictor(model_or_predictor)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.upscale_chunk = max(int(upscale_chunk), 1)

    @staticmethod
    def _check_grid(grid: np.ndarray, index: int) -> np.ndarray:
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 2 or grid.shape[1] != 2:
            raise ValueError(f'point_grids[{index}] must have shape (K, 2), got {grid.shape}')
        if grid.size and (grid.min() < 0 or grid.max() > 1):
            raise ValueError(f'point_grids[{index}] must hold (x, y) normalized to [0, 1]')
        return grid

    @property
    def model(self) -> torch.nn.Module:
        return self.predictor.model

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def generate(
        self, image: Union[np.ndarray, torch.Tensor], image_format: str = 'RGB'
    ) -> List[Dict[str, Any]]:
        """Segment everything in an image.

        Args:
            image (np.ndarray | Tensor): ``(H, W, 3)`` uint8.
            image_format (str): ``'RGB'`` or ``'BGR'``.

        Returns:
            list[dict]: One record per mask: ``segmentation`` (``(H, W)`` bool array,
            or an RLE dict by ``output_mode``), ``area`` (int), ``bbox`` (XYWH),
            ``predicted_iou``, ``point_coords`` (``[[x, y]]``), ``stability_score``,
            ``crop_box`` (XYWH). Empty when no mask passes the filters.
        """
        return self._records(image_to_rgb_uint8(image, image_format))

    @torch.no_grad()
    def generate_batch(
        self,
        images: Sequence[Union[np.ndarray, torch.Tensor]],
        batch_size: int = 4,
        image_format: str = 'RGB',
    ) -> List[List[Dict[str, Any]]]:
        """Segment everything in several images, running the encoder on batches of crops.

        The crops of ``batch_size`` images at a time (one per image without crop
        layers) are encoded together, ``batch_size`` per encoder call; the records
        equal :meth:`generate`'s on each image (up to the float rounding of a batched
        matrix product).

        Args:
            images (Sequence[np.ndarray | Tensor]): ``(H_i, W_i, 3)`` uint8 images.
            batch_size (int): Images (and crops) per encoder call.
            image_format (str): ``'RGB'`` or ``'BGR'``.

        Returns:
            list[list[dict]]: :meth:`generate`'s records, one list per image.
        """
        batch_size = check_batch_size(batch_size)
        results = []
        for start in range(0, len(images), batch_size):
            group = [
                image_to_rgb_uint8(im, image_format) for im in images[start : start + batch_size]
            ]
            crops = [self._crops(image.shape[:2]) for image in group]
            pixels = (
                image[y0:y1, x0:x1]
                for image, boxes in zip(group, crops)
                for (x0, y0, x1, y1), _ in boxes
            )
            embeddings = encode_images(self.model, pixels, batch_size)
            results += [
                self._records(image, [next(embeddings) for _ in boxes])
                for image, boxes in zip(group, crops)
            ]
        return results

    def _records(
        self, image: np.ndarray, embeddings: Optional[List[ImageEmbedding]] = None
    ) -> List[Dict[str, Any]]:
        """:meth:`generate`'s records of an RGB image (crop embeddings, if given, in crop order)."""
        data = self._generate_masks(image, embeddings)
        if self.min_mask_region_area > 0:
            data = self._remove_small_regions(data)
        rles = data['rles']
        if self.output_mode == 'coco_rle':
            segmentations = [uncompressed_to_coco_rle(r) for r in rles]
        elif self.output_mode == 'binary_mask':
            segmentations = [rle_to_mask(r) for r in rles]
        else:
            segmentations = rles
        boxes = box_xyxy_to_xywh(data['boxes']).tolist()
        crop_boxes = box_xyxy_to_xywh(data['crop_boxes']).tolist()
        ious = data['iou_preds'].tolist()
        stability = data['stability_score'].tolist()
        points = data['points'].tolist()
        return [
            {
                'segmentation': segmentations[i],
                'area': rle_area(rles[i]),
                'bbox': boxes[i],
                'predicted_iou': ious[i],
                'point_coords': [points[i]],
                'stability_score': stability[i],
                'crop_box': crop_boxes[i],
            }
            for i in range(len(rles))
        ]

    # ------------------------------------------------------------------ stages
    def _crops(self, orig_size: Tuple[int, int]) -> List[Tuple[List[int], int]]:
        """``(XYXY crop box, layer)`` of every crop of an image, in processing order."""
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        # the official crop layout leaves crops without pixels on images only a few
        # pixels wide: they hold no mask
        return [(b, i) for b, i in zip(crop_boxes, layer_idxs) if b[2] > b[0] and b[3] > b[1]]

    def _generate_masks(
        self, image: np.ndarray, embeddings: Optional[List[ImageEmbedding]] = None
    ) -> _MaskSet:
        orig_size = image.shape[:2]
        crops = self._crops(orig_size)
        crop_boxes = [b for b, _ in crops]
        embeddings = [None] * len(crops) if embeddings is None else embeddings
        parts = [
            self._process_crop(image, box, layer, orig_size, embedding)
            for (box, layer), embedding in zip(crops, embeddings)
        ]
        data = _MaskSet.cat(parts, parts[0].fields.keys())
        if len(crop_boxes) > 1:
            # prefer masks from smaller crops
            scores = 1 / box_area(data['crop_boxes'])
            keep = batched_nms(
                data['boxes'].float(),
                scores.to(data['boxes'].device),
                torch.zeros(len(data), device=data['boxes'].device),
                iou_threshold=self.crop_nms_thresh,
            )
            data.filter(keep)
        for key, value in data.fields.items():
            if isinstance(value, torch.Tensor):
                data[key] = value.cpu()
        return data

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: List[int],
        layer: int,
        orig_size: Tuple[int, int],
        embedding: Optional[ImageEmbedding] = None,
    ) -> _MaskSet:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_size = crop.shape[:2]
        if embedding is None:
            self.predictor.set_image(crop)
        else:
            self.predictor.set_image_embedding(
                embedding.embedding, embedding.original_size, embedding.input_size
            )
        points = self.point_grids[layer] * np.array(crop_size, dtype=np.float64)[None, ::-1]
        batches = [
            self._process_batch(
                points[s : s + self.points_per_batch], crop_size, crop_box, orig_size
            )
            for s in range(0, len(points), self.points_per_batch)
        ]
        self.predictor.reset_image()
        data = _MaskSet.cat(batches, ('rles', 'boxes', 'iou_preds', 'points', 'stability_score'))
        device = data['boxes'].device
        keep = batched_nms(
            data['boxes'].float(),
            data['iou_preds'],
            torch.zeros(len(data), device=device),
            iou_threshold=self.box_nms_thresh,
        )
        data.filter(keep)
        data['boxes'] = uncrop_boxes_xyxy(data['boxes'], crop_box)
        data['points'] = uncrop_points(data['points'], crop_box)
        data['crop_boxes'] = torch.tensor(
            [list(crop_box)] * len(data), dtype=torch.int64, device=device
        ).reshape(-1, 4)
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        crop_size: Tuple[int, int],
        crop_box: List[int],
        orig_size: Tuple[int, int],
    ) -> _MaskSet:
        predictor = self.predictor
        device = predictor.device
        in_points = torch.as_tensor(
            apply_coords(points, crop_size, predictor.image_size), device=device
        )
        in_labels = torch.ones(len(in_points), dtype=torch.int32, device=device)
        low_res, iou_preds = self.model.predict_prompts(
            predictor.features,
            (in_points[:, None, :], in_labels[:, None]),
            multimask_output=True,
        )
        per_point = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou_preds = iou_preds.flatten(0, 1)
        point_t = torch.as_tensor(np.repeat(points, per_point, axis=0), device=device)
        # the predicted IoU needs no full-size mask: filter before upscaling
        if self.pred_iou_thresh > 0.0:
            keep = (iou_preds > self.pred_iou_thresh).nonzero()[:, 0]
            low_res, iou_preds, point_t = low_res[keep], iou_preds[keep], point_t[keep]
        # every later step is per mask: run them a chunk at a time so that only one
        # chunk of full-size logits and masks exists at once
        chunk = self._chunk_size(crop_size)
        parts = [
            self._process_chunk(
                low_res[s : s + chunk],
                iou_preds[s : s + chunk],
                point_t[s : s + chunk],
                crop_size,
                crop_box,
                orig_size,
            )
            for s in range(0, len(low_res), chunk)
        ]
        if not parts:
            parts = [
                self._process_chunk(low_res, iou_preds, point_t, crop_size, crop_box, orig_size)
            ]
        return _MaskSet.cat(parts, ('rles', 'boxes', 'iou_preds', 'points', 'stability_score'))

    def _chunk_size(self, crop_size: Tuple[int, int]) -> int:
        """Masks per chunk: ``upscale_chunk``, fewer for huge images (~1 GiB of logits)."""
        pixels = max(int(crop_size[0]) * int(crop_size[1]), 1)
        return max(1, min(self.upscale_chunk, (1 << 28) // pixels))

    def _process_chunk(
        self,
        low_res: torch.Tensor,
        iou_preds: torch.Tensor,
        points: torch.Tensor,
        crop_size: Tuple[int, int],
        crop_box: List[int],
        orig_size: Tuple[int, int],
    ) -> _MaskSet:
        """Upscale, score, filter, box and run-length encode ``K`` masks of one crop.

        Args:
            low_res (Tensor): ``(K, 4E, 4E)`` low-resolution logits.
            iou_preds (Tensor): ``(K,)`` predicted IoUs.
            points (Tensor): ``(K, 2)`` prompts, crop frame.
            crop_size (tuple[int, int]): ``(h, w)`` of the crop.
            crop_box (list[int]): XYXY crop in the image.
            orig_size (tuple[int, int]): ``(H, W)`` of the image.

        Returns:
            _MaskSet: the masks kept (RLEs in the image frame, crop-frame boxes).
        """
        threshold = self.model.mask_threshold
        logits = upscale_mask_logits(
            low_res[:, None], self.predictor.image_size, self.predictor.input_size, crop_size
        )[:, 0]
        high, low = stability_counts(logits, threshold, self.stability_score_offset)
        stability = high.to(torch.int32) / low.to(torch.int32)
        if self.stability_score_thresh > 0.0:
            keep = (stability >= self.stability_score_thresh).nonzero()[:, 0]
            logits, iou_preds, points, stability = (
                t[keep] for t in (logits, iou_preds, points, stability)
            )
        masks = logits > threshold
        del logits
        boxes = batched_mask_to_box(masks)
        orig_h, orig_w = orig_size
        near_edge = is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        if near_edge.any():
            keep = (~near_edge).nonzero()[:, 0]
            masks, boxes, iou_preds, points, stability = (
                t[keep] for t in (masks, boxes, iou_preds, points, stability)
            )
        return _MaskSet(
            rles=mask_to_rle(uncrop_masks(masks, crop_box, orig_h, orig_w)),
            boxes=boxes,
            iou_preds=iou_preds,
            points=points,
            stability_score=stability,
        )

    def _remove_small_regions(self, data: _MaskSet) -> _MaskSet:
        """Fill small holes and remove small islands, then NMS preferring unchanged masks."""
        if len(data) == 0:
            return data
        area = self.min_mask_region_area
        changed_masks = {}
        boxes, scores = [], []
        for i, rle in enumerate(data['rles']):
            mask = rle_to_mask(rle)
            mask, holes_changed = remove_small_regions(mask, area, mode='holes')
            mask, islands_changed = remove_small_regions(mask, area, mode='islands')
            changed = holes_changed or islands_changed
            mask_t = torch.from_numpy(np.ascontiguousarray(mask))
            boxes.append(batched_mask_to_box(mask_t))
            scores.append(0.0 if changed else 1.0)
            if changed:
                changed_masks[i] = mask_t
        boxes = torch.stack(boxes)
        nms_thresh = max(self.box_nms_thresh, self.crop_nms_thresh)
        keep = batched_nms(
            boxes.float(), torch.as_tensor(scores), torch.zeros(len(boxes)), nms_thresh
        )
        for i in keep.tolist():
            if i in changed_masks:
                data['rles'][i] = mask_to_rle(changed_masks[i][None])[0]
                data['boxes'][i] = boxes[i]
        data.filter(keep)
        return data
