"""The assembled Segment Anything model as an mmdet detector."""

import warnings
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

from ...structures.boxes import masks_to_boxes
from ...structures.mask_postprocess import select_best_candidate, upscale_mask_logits
from ...structures.prompts import check_box_order, check_prompt_batch, prompt_batch_size
from ...structures.transforms import apply_boxes, apply_coords
from ...utils.checkpoint_keys import KeyMapError, detect_layout, to_mmsam_layout
from ..utils import autocast_context, compile_module, parse_autocast_dtype

Points = Tuple[torch.Tensor, torch.Tensor]


@MODELS.register_module()
class SAM(BaseDetector):
    """Segment Anything: an image encoder, a prompt encoder and a mask decoder.

    Args:
        backbone (dict): Config of the image encoder, built from mmpretrain's
            registry (e.g. ``dict(type='mmpretrain.SAMImageEncoder', arch='base')``).
        prompt_encoder (dict): Config of :class:`SAMPromptEncoder`.
        mask_decoder (dict): Config of :class:`SAMMaskDecoder`.
        data_preprocessor (dict, optional): Config of :class:`SAMDataPreprocessor`.
        mask_threshold (float): Logit threshold of the binary masks. Defaults to 0.0.
        test_cfg (dict, optional): ``multimask_output`` and ``prompts_per_batch``
            (int or None: the one prompt-chunk setting, at most this many prompts
            through the mask decoder's transformer and upscaling at a time, to bound
            memory; the decoder's speed path takes fewer when their features exceed
            about ``2 ** 22`` values; results do not depend on it; default None).
            ``multimask_output`` chooses
            which prompts get the three multimask outputs (the returned mask is the
            one with the highest predicted IoU) and which get the single output
            (the decoder's output token 0, the "fourth" mask of the SAM paper, as
            the official ``SamPredictor.predict(..., multimask_output=False)``):

            * ``'auto'`` (default): the SAM paper's protocol ("a single mask when
              more than one prompt is given"), decided per prompt: three outputs
              for an ambiguous prompt, at most one point (padding labels -1 not
              counted) and neither a box nor a mask input; the single output for a
              box, a box with points, two or more points, and points with a mask
              input (clicks 2..N of the interactive protocol). Prompts of both
              kinds on one image are decoded in two groups.
            * ``True``: three outputs for every prompt (best by predicted IoU).
            * ``False``: the single output for every prompt.
        autocast_dtype (str | torch.dtype | dict, optional): Mixed precision for
            inference, the one place it is set: ``'bfloat16'`` (CPU or CUDA) or
            ``'float16'`` (CUDA only), for both the image encoder and the mask decoder,
            or a dict ``dict(encoder=..., decoder=...)``. Outputs stay float32. Changes
            results slightly. Defaults to None (float32). (The image encoder's former
            ``backbone.autocast_dtype`` is still read, with a deprecation warning.)
        compile (bool | dict): Run the image encoder through ``torch.compile``
            (a dict gives its keyword arguments). Defaults to False.
        fast_path (bool, optional): The one switch between the speed paths
            (:mod:`mmsam.models.layers.rel_pos_attention`,
            :mod:`mmsam.models.heads.mask_decoder_fast_path`) and the reference-shaped
            modules, for the image encoder and the mask decoder together; same results.
            None keeps the modules' own setting (True). Defaults to None.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(
        self,
        backbone: dict,
        prompt_encoder: dict,
        mask_decoder: dict,
        data_preprocessor: Optional[dict] = None,
        mask_threshold: float = 0.0,
        test_cfg: Optional[dict] = None,
        train_cfg: Optional[dict] = None,
        autocast_dtype: Union[None, str, torch.dtype, dict] = None,
        compile: Union[bool, dict] = False,
        fast_path: Optional[bool] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='SAMDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # built from mmdet's registry, whatever the current default scope is
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        backbone = dict(backbone)
        if 'autocast_dtype' in backbone:
            legacy = backbone.pop('autocast_dtype')
            warnings.warn(
                'backbone.autocast_dtype is deprecated: set autocast_dtype on SAM '
                f'(autocast_dtype=dict(encoder={legacy!r})); used for the encoder now',
                DeprecationWarning,
                stacklevel=2,
            )
            if autocast_dtype is None:
                autocast_dtype = dict(encoder=legacy)
        self.backbone = self._build_backbone(backbone)
        self.prompt_encoder = MODELS.build(prompt_encoder)
        self.mask_decoder = MODELS.build(mask_decoder)
        if getattr(self.mask_decoder, 'uses_interm_features', False):
            # SAM-HQ: the decoder reads the encoder's early feature too
            if not hasattr(self.backbone, 'out_interm'):
                raise TypeError(
                    f'{type(self.mask_decoder).__name__} needs the early feature of the '
                    f'image encoder, which {type(self.backbone).__name__} cannot return '
                    '(no out_interm option)'
                )
            self.backbone.out_interm = True
        self.mask_threshold = float(mask_threshold)
        self.test_cfg = dict(multimask_output='auto', prompts_per_batch=None)
        self.test_cfg.update(test_cfg or {})
        self.multimask_mode()  # refuse a bad value when the model is built
        self.train_cfg = train_cfg
        self.image_size = int(getattr(self.backbone, 'img_size', 1024))
        self.set_speed_options(autocast_dtype=autocast_dtype, compile=compile, fast_path=fast_path)
        # official / Hugging Face state dicts load directly: keys are mapped
        self._register_load_state_dict_pre_hook(self._convert_foreign_layout)
        preprocessor_size = getattr(self.data_preprocessor, 'image_size', self.image_size)
        if preprocessor_size != self.image_size:
            raise ValueError(
                f'data_preprocessor.image_size ({preprocessor_size}) must equal the image '
                f'encoder img_size ({self.image_size})'
            )
        # EfficientViT-SAM's L encoders take 512 px inputs in SAM's 1024 px frame
        encoder_input = int(getattr(self.backbone, 'input_size', self.image_size))
        preprocessor_input = getattr(self.data_preprocessor, 'encoder_image_size', encoder_input)
        if preprocessor_input != encoder_input:
            raise ValueError(
                f'data_preprocessor.encoder_image_size ({preprocessor_input}) must equal the '
                f'image encoder input_size ({encoder_input})'
            )

    @staticmethod
    def _build_backbone(cfg: dict) -> torch.nn.Module:
        """Build the image encoder from mmpretrain's registry (or mmdet's).

        mmengine switches a build to the registry of the current default scope,
        which the runner sets to ``mmdet``; the mmpretrain build therefore runs
        with the default scope overridden to ``mmpretrain``.
        """
        cfg = dict(cfg)
        type_name = cfg.get('type', '')
        if isinstance(type_name, str) and type_name.startswith('mmpretrain.'):
            cfg['type'] = type_name[len('mmpretrain.') :]
        elif not (isinstance(type_name, str) and type_name in PRETRAIN_MODELS):
            return MODELS.build(cfg)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return PRETRAIN_MODELS.build(cfg)

    @staticmethod
    def _convert_foreign_layout(state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Bring official / Hugging Face / bare ``ViTSAM`` keys to mmsam's names in place.

        Makes ``model.load_state_dict(official_state_dict)`` work like
        :func:`mmsam.utils.checkpoint_loader.prepare_state_dict` (which also checks every
        key; this hook leaves the check to ``strict``). State dicts in mmsam's layout, or
        in none that mmsam knows, are left alone, so that loading reports their keys.
        """
        own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        try:
            if detect_layout(own) == 'mmsam':
                return
            converted, _, _ = to_mmsam_layout(own)
        except (KeyMapError, ValueError):
            return
        for key in own:
            del state_dict[prefix + key]
        for key, value in converted.items():
            state_dict[prefix + key] = value

    # ------------------------------------------------------------------ speed options
    def set_speed_options(
        self,
        autocast_dtype: Union[None, str, torch.dtype, dict] = None,
        compile: Union[bool, dict] = False,
        fast_path: Optional[bool] = None,
    ) -> None:
        """Choose mixed precision, compilation and the speed paths (see the class).

        Args:
            autocast_dtype (str | torch.dtype | dict, optional): ``None``/``'float32'``,
                ``'bfloat16'``, ``'float16'``, or ``dict(encoder=..., decoder=...)``.
            compile (bool | dict): ``torch.compile`` the image encoder.
            fast_path (bool, optional): Speed paths (True) or the reference-shaped
                modules (False) in the encoder and the decoder; None leaves them.
        """
        if fast_path is not None:
            for module in (self.backbone, self.mask_decoder):
                if hasattr(module, 'fast_path'):
                    module.fast_path = bool(fast_path)
        if isinstance(autocast_dtype, dict):
            unknown = set(autocast_dtype) - {'encoder', 'decoder'}
            if unknown:
                raise ValueError(
                    f'autocast_dtype dict takes the keys encoder and decoder, got {sorted(unknown)}'
                )
            encoder_dtype = autocast_dtype.get('encoder')
            decoder_dtype = autocast_dtype.get('decoder')
        else:
            encoder_dtype = decoder_dtype = autocast_dtype
        self.encoder_autocast_dtype = parse_autocast_dtype(encoder_dtype)
        self.decoder_autocast_dtype = parse_autocast_dtype(decoder_dtype)
        # kept outside the module tree: the state-dict keys do not change
        self.__dict__['_compiled_backbone'] = compile_module(self.backbone, compile)

    # ------------------------------------------------------------------ encoder
    def extract_feat(self, batch_inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Image embeddings of normalized, padded inputs.

        Args:
            batch_inputs (Tensor): ``(B, 3, S, S)``.

        Returns:
            tuple[Tensor]: ``((B, 256, S / 16, S / 16),)``; for a decoder that reads
            the encoder's early feature (SAM-HQ) ``((B, 256 + V, S / 16, S / 16),)``,
            the embedding followed by the ``V``-channel early feature
            (:attr:`embedding_dims` channels in all).
        """
        if batch_inputs.dim() != 4 or batch_inputs.shape[1] != 3:
            raise ValueError(
                f'batch_inputs must have shape (B, 3, {self.image_size}, {self.image_size}), '
                f'got {tuple(batch_inputs.shape)}'
            )
        backbone = self.__dict__.get('_compiled_backbone')
        backbone = self.backbone if backbone is None else backbone
        if self.encoder_autocast_dtype is None:
            feats = tuple(backbone(batch_inputs))
        else:
            with autocast_context(batch_inputs.device, self.encoder_autocast_dtype):
                feats = backbone(batch_inputs)
            feats = tuple(feat.float() for feat in feats)
        if getattr(self.mask_decoder, 'uses_interm_features', False):
            return (self.mask_decoder.pack_image_features(feats[0], feats[-1]),)
        return feats

    @property
    def embedding_dims(self) -> int:
        """Channels of the image embeddings :meth:`extract_feat` returns."""
        return int(self.mask_decoder.image_feature_dims)

    # ------------------------------------------------------------------ decoder
    def predict_prompts(
        self,
        image_embeddings: torch.Tensor,
        points: Optional[Points] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        hq_token_only: Optional[bool] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode masks for ``N`` prompts on one image (input-frame coordinates).

        Args:
            image_embeddings (Tensor): ``(1, embedding_dims, E, E)``.
            points (tuple[Tensor, Tensor], optional): coords ``(N, P, 2)`` and labels
                ``(N, P)``.
            boxes (Tensor, optional): ``(N, 4)`` XYXY.
            mask_inputs (Tensor, optional): ``(N, 1, 4E, 4E)`` low-resolution logits.
            multimask_output (bool): Three masks per prompt, or one. Defaults to True.
                (SAM-HQ returns one mask either way: SAM's best output by predicted IoU,
                or its single output, fused with the HQ output.)
            hq_token_only (bool, optional): SAM-HQ only: the HQ output alone (None: the
                decoder's ``hq_token_only`` setting). Refused for other decoders.

        Returns:
            tuple[Tensor, Tensor]: low-resolution logits ``(N, C, 4E, 4E)`` and IoU
            predictions ``(N, C)``.
        """
        if image_embeddings.dim() != 4 or image_embeddings.shape[0] != 1:
            raise ValueError(
                'image_embeddings must have shape (1, C, h, w) (one image), got '
                f'{tuple(image_embeddings.shape)}'
            )
        extra = {}
        if hq_token_only is not None:
            if not hasattr(self.mask_decoder, 'hq_token_only'):
                raise ValueError(
                    "hq_token_only is a SAM-HQ option; this model's mask decoder is a "
                    f'{type(self.mask_decoder).__name__}'
                )
            extra['hq_token_only'] = bool(hq_token_only)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        dtype = self.decoder_autocast_dtype
        with autocast_context(image_embeddings.device, dtype):
            logits, ious = self.mask_decoder(
                image_embeddings=image_embeddings,
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                prompts_per_chunk=self.test_cfg.get('prompts_per_batch'),
                **extra,
            )
        if dtype is not None:
            logits, ious = logits.float(), ious.float()
        return logits, ious

    def multimask_mode(self) -> Union[str, bool]:
        """``test_cfg['multimask_output']``, checked: ``'auto'``, ``True`` or ``False``."""
        mode = self.test_cfg.get('multimask_output', 'auto')
        if not (mode is True or mode is False or mode == 'auto'):
            raise ValueError(
                "test_cfg['multimask_output'] must be 'auto' (the SAM paper's protocol: three "
                'outputs for a single point, one for boxes and several points), True (three '
                f'outputs for every prompt) or False (one for every prompt), got {mode!r}'
            )
        return mode

    @property
    def num_mask_outputs(self) -> int:
        """``C`` of the ``(N, C, ...)`` outputs of :meth:`predict`: 1 when
        ``test_cfg['multimask_output']`` is False, else the number of multimask outputs
        (1 for SAM-HQ, whose decoder returns one mask per prompt)."""
        return self.mask_decoder.num_outputs(self.multimask_mode() is not False)

    def multimask_prompts(
        self,
        points: Optional[Points],
        boxes: Optional[torch.Tensor],
        mask_inputs: Optional[torch.Tensor],
        n: int,
        device=None,
    ) -> torch.Tensor:
        """Which of ``N`` prompts are decoded with the multimask outputs (see ``test_cfg``):
        ``(N,)`` bool; the arguments are those of :meth:`ambiguous_prompts`."""
        mode = self.multimask_mode()
        if mode != 'auto':
            return torch.full((n,), bool(mode), dtype=torch.bool, device=device)
        return self.ambiguous_prompts(points, boxes, mask_inputs, n, device)

    @staticmethod
    def ambiguous_prompts(
        points: Optional[Points],
        boxes: Optional[torch.Tensor],
        mask_inputs: Optional[torch.Tensor],
        n: int,
        device=None,
    ) -> torch.Tensor:
        """The SAM paper's rule (``multimask_output='auto'``, also used in training):
        a prompt is ambiguous, and gets the three multimask outputs, when it has at most
        one point (padding labels -1 not counted) and neither a box nor a mask input.

        Args:
            points (tuple[Tensor, Tensor], optional): coords ``(N, P, 2)`` and labels
                ``(N, P)`` (-1: padding).
            boxes (Tensor, optional): ``(N, 4)``.
            mask_inputs (Tensor, optional): ``(N, 1, 4E, 4E)``.
            n (int): The number of prompts.
            device (torch.device, optional): Of the result.

        Returns:
            Tensor: ``(N,)`` bool.
        """
        if boxes is not None or mask_inputs is not None or points is None:
            flag = boxes is None and mask_inputs is None
            return torch.full((n,), flag, dtype=torch.bool, device=device)
        return ((points[1] != -1).sum(dim=1) <= 1).to(device)

    def decode_prompts(
        self,
        image_embeddings: torch.Tensor,
        points: Optional[Points] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predict_prompts` with ``test_cfg``'s protocol, decided per prompt.

        Prompts are decoded in at most two groups (multimask and single output). A
        single-output prompt's logits and score are repeated ``C`` times, so that the
        best of its ``C`` outputs, and the oracle over them, is its single output.

        Args:
            image_embeddings, points, boxes, mask_inputs: As for :meth:`predict_prompts`
                (input-frame coordinates).

        Returns:
            tuple[Tensor, Tensor, Tensor]: low-resolution logits ``(N, C, 4E, 4E)``,
            IoU predictions ``(N, C)`` and which prompts had multimask output
            ``(N,)`` bool; ``C`` is :attr:`num_mask_outputs`.
        """
        # checked once, by the prompt encoder as each group is decoded
        n = prompt_batch_size(points, boxes, mask_inputs)
        device = image_embeddings.device
        multi = self.multimask_prompts(points, boxes, mask_inputs, n, device)
        c = self.num_mask_outputs
        size = tuple(self.prompt_encoder.mask_input_size)
        if n == 0:  # nothing reaches the prompt encoder: checked here
            check_prompt_batch(points, boxes, mask_inputs, size)
            zeros = image_embeddings.new_zeros
            return zeros((0, c, *size)), zeros((0, c)), multi
        groups = [(flag, rows) for flag, rows in ((True, multi), (False, ~multi)) if rows.any()]
        if len(groups) == 1:
            low_res, iou = self.predict_prompts(
                image_embeddings, points, boxes, mask_inputs, groups[0][0]
            )
            return low_res.expand(-1, c, -1, -1), iou.expand(-1, c), multi
        low_res = image_embeddings.new_zeros((n, c, *size))
        iou = image_embeddings.new_zeros((n, c))
        for flag, rows in groups:
            part = self._take(rows, points, boxes, mask_inputs)
            part_low, part_iou = self.predict_prompts(image_embeddings, *part, flag)
            low_res[rows] = part_low.expand(-1, c, -1, -1)
            iou[rows] = part_iou.expand(-1, c)
        return low_res, iou, multi

    def upscale_masks(
        self,
        low_res_logits: torch.Tensor,
        multimask: torch.Tensor,
        input_size: Tuple[int, int],
        original_size: Tuple[int, int],
    ) -> torch.Tensor:
        """Binary masks of :meth:`decode_prompts`' logits at the original size.

        Upscales each single-output prompt's mask once (its ``C`` copies are equal).

        Args:
            low_res_logits (Tensor): ``(N, C, 4E, 4E)``.
            multimask (Tensor): ``(N,)`` bool, from :meth:`decode_prompts`.
            input_size (tuple[int, int]): ``(h, w)`` of the resized image.
            original_size (tuple[int, int]): ``(H, W)`` of the original image.

        Returns:
            Tensor: ``(N, C, H, W)`` bool.
        """
        n, c = low_res_logits.shape[:2]

        def upscale(logits):
            return self.postprocess_masks(logits, input_size, original_size) > self.mask_threshold

        if multimask.all():
            return upscale(low_res_logits)
        if not multimask.any():
            return upscale(low_res_logits[:, :1]).expand(-1, c, -1, -1)
        masks = low_res_logits.new_empty((n, c, *original_size), dtype=torch.bool)
        masks[multimask] = upscale(low_res_logits[multimask])
        masks[~multimask] = upscale(low_res_logits[~multimask, :1])  # broadcast to C
        return masks

    @staticmethod
    def _take(index, points, boxes, mask_inputs):
        """The prompts ``index`` (a slice or an ``(N,)`` bool mask) selects."""
        return (
            None if points is None else (points[0][index], points[1][index]),
            None if boxes is None else boxes[index],
            None if mask_inputs is None else mask_inputs[index],
        )

    def postprocess_masks(
        self,
        low_res_logits: torch.Tensor,
        input_size: Tuple[int, int],
        original_size: Tuple[int, int],
    ) -> torch.Tensor:
        """Upscale low-resolution logits to the original image, removing the padding.

        Args:
            low_res_logits (Tensor): ``(N, C, 4E, 4E)``.
            input_size (tuple[int, int]): ``(h, w)`` of the resized image.
            original_size (tuple[int, int]): ``(H, W)`` of the original image.

        Returns:
            Tensor: logits ``(N, C, H, W)``.
        """
        # the official upsample-crop-resize, computing only the rows/columns that survive
        # the crop (bit-identical; tests/structures/test_mask_utils.py)
        return upscale_mask_logits(low_res_logits, self.image_size, input_size, original_size)

    # ------------------------------------------------------------------ mmdet API
    def _prompts_of(
        self, gt: Optional[InstanceData], ori_shape: Tuple[int, int], device: torch.device
    ) -> Tuple[Optional[Points], Optional[torch.Tensor], Optional[torch.Tensor], int]:
        """Read the prompts of one data sample and map them to the input frame."""
        points = boxes = mask_inputs = None
        if gt is None:
            return points, boxes, mask_inputs, 1
        keys = set(gt.keys())
        if 'points' in keys:
            if 'point_labels' not in keys:
                raise ValueError('gt_instances.points needs gt_instances.point_labels')
            coords = torch.as_tensor(gt.points, device=device)
            labels = torch.as_tensor(gt.point_labels, device=device)
            if coords.dim() != 3 or coords.shape[-1] != 2:
                raise ValueError(
                    f'gt_instances.points must have shape (N, P, 2), got {tuple(coords.shape)}'
                )
            points = (apply_coords(coords, ori_shape, self.image_size), labels.to(torch.int64))
        if 'bboxes' in keys:
            raw = gt.bboxes
            raw = raw.tensor if hasattr(raw, 'tensor') else raw
            raw = torch.as_tensor(raw, device=device, dtype=torch.float32)
            if raw.dim() != 2 or raw.shape[-1] != 4:
                raise ValueError(
                    f'gt_instances.bboxes must have shape (N, 4), got {tuple(raw.shape)}'
                )
            check_box_order(raw, 'gt_instances.bboxes')
            boxes = apply_boxes(raw, ori_shape, self.image_size)
        if 'mask_inputs' in keys:
            mask_inputs = torch.as_tensor(gt.mask_inputs, device=device, dtype=torch.float32)
        if points is None and boxes is None and mask_inputs is None:
            return None, None, None, 1
        return points, boxes, mask_inputs, len(gt)

    def predict(
        self,
        batch_inputs: torch.Tensor,
        batch_data_samples: List[DetDataSample],
        rescale: bool = True,
    ) -> List[DetDataSample]:
        """Segment the prompts carried by each data sample.

        Args:
            batch_inputs (Tensor): ``(B, 3, S, S)`` from :class:`SAMDataPreprocessor`.
            batch_data_samples (list[DetDataSample]): prompts in ``gt_instances``
                (original frame): ``bboxes (N, 4)``, ``points (N, P, 2)`` with
                ``point_labels (N, P)``, ``mask_inputs (N, 1, 4E, 4E)``. A sample
                with none of them gets one prompt-less prediction.
            rescale (bool): Unused: masks are always returned at the original size.

        Prompt handling: points outside the image are encoded as given (as the
        official code does); boxes with ``x2 < x1`` or ``y2 < y1`` and label arrays
        whose shape differs from the points' are refused with a ``ValueError``; a
        sample whose prompt fields hold zero prompts gets empty ``pred_instances``.
        Each prompt is decoded with three outputs or the single output as
        ``test_cfg['multimask_output']`` says (see the class).

        Returns:
            list[DetDataSample]: with ``pred_instances``: ``masks (N, H, W)`` bool
            (the single output, or of the three the one with the highest predicted
            IoU), ``scores (N,)`` (its predicted IoU), ``labels (N,)``,
            ``bboxes (N, 4)``, ``multimask_masks (N, C, H, W)`` bool,
            ``multimask_scores (N, C)``, ``mask_logits (N, C, 4E, 4E)`` and
            ``multimask_output (N,)`` bool (whether the prompt had three outputs).
            ``C`` is 3, or 1 when ``test_cfg['multimask_output']`` is False; a
            single-output prompt's mask, score and logits are repeated ``C`` times.
        """
        embeddings = self.extract_feat(batch_inputs)[0]
        for i, sample in enumerate(batch_data_samples):
            ori_shape = tuple(sample.metainfo['ori_shape'][:2])
            img_shape = tuple(sample.metainfo['img_shape'][:2])
            gt = sample.gt_instances if 'gt_instances' in sample else None
            points, boxes, mask_inputs, n = self._prompts_of(gt, ori_shape, embeddings.device)
            sample.pred_instances = self._predict_one(
                embeddings[i : i + 1],
                points,
                boxes,
                mask_inputs,
                n,
                img_shape,
                ori_shape,
                gt,
            )
        return batch_data_samples

    def _predict_one(
        self, embedding, points, boxes, mask_inputs, n, img_shape, ori_shape, gt
    ) -> InstanceData:
        device = embedding.device
        num_out = self.num_mask_outputs
        h, w = ori_shape
        results = InstanceData()
        if n == 0:
            results.masks = torch.zeros((0, h, w), dtype=torch.bool, device=device)
            results.scores = torch.zeros((0,), device=device)
            results.labels = torch.zeros((0,), dtype=torch.int64, device=device)
            results.bboxes = torch.zeros((0, 4), device=device)
            results.multimask_masks = torch.zeros(
                (0, num_out, h, w), dtype=torch.bool, device=device
            )
            results.multimask_scores = torch.zeros((0, num_out), device=device)
            size = self.prompt_encoder.mask_input_size
            results.mask_logits = torch.zeros((0, num_out, *size), device=device)
            results.multimask_output = torch.zeros((0,), dtype=torch.bool, device=device)
            return results
        low_res, iou, multi = self.decode_prompts(embedding, points, boxes, mask_inputs)
        all_masks = self.upscale_masks(low_res, multi, img_shape, ori_shape)
        _, results.scores, masks = select_best_candidate(iou, all_masks)
        results.masks = masks
        if gt is not None and 'labels' in gt and len(gt.labels) == len(masks):
            results.labels = torch.as_tensor(gt.labels, device=device).long()
        else:
            results.labels = torch.zeros(len(masks), dtype=torch.int64, device=device)
        results.bboxes = masks_to_boxes(masks)
        results.multimask_masks = all_masks
        results.multimask_scores = iou
        results.mask_logits = low_res
        results.multimask_output = multi
        return results

    def _forward(
        self, batch_inputs: torch.Tensor, batch_data_samples: Optional[List[DetDataSample]] = None
    ) -> Tuple[torch.Tensor, ...]:
        """Raw network outputs (``mode='tensor'``): the image embeddings."""
        return self.extract_feat(batch_inputs)

    def get_layer_depth(self, param_name: str) -> Tuple[int, int]:
        """Depth of a parameter for layer-wise lr decay (mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor``): the image encoder's
        ``get_layer_depth`` with the ``backbone.`` prefix; the prompt encoder and the
        mask decoder get the last depth (the full learning rate)."""
        return self.backbone.get_layer_depth(param_name, 'backbone.')

    def loss(
        self, batch_inputs: torch.Tensor, batch_data_samples: List[DetDataSample]
    ) -> Union[Dict, List]:
        """Losses of SAM's simulated interactive training (the SAM paper's recipe).

        Per image, up to ``train_cfg.max_instances_per_image`` ground-truth instances get
        a noisy box or a point inside the mask, then corrective points from the error
        region over several rounds; focal + dice (20:1) on the upscaled logits and MSE
        on the predicted IoU. See :class:`mmsam.models.task_modules.SAMInteractiveLoss`
        for ``train_cfg``'s keys.

        Args:
            batch_inputs (Tensor): ``(B, 3, S, S)`` from :class:`SAMDataPreprocessor`.
            batch_data_samples (list[DetDataSample]): ``gt_instances.masks`` ``(N, H, W)``
                in the frame of the image given to the preprocessor.

        Returns:
            dict[str, Tensor]: ``loss_mask_focal``, ``loss_mask_dice``, ``loss_iou``.
        """
        criterion = self.__dict__.get('_training_loss')
        if criterion is None:
            from ..task_modules import SAMInteractiveLoss

            criterion = SAMInteractiveLoss(**(self.train_cfg or {}))
            self.__dict__['_training_loss'] = criterion  # not a submodule: no state
        return criterion(self, batch_inputs, batch_data_samples)
