"""A reduced-size Grounding DINO and a tiny random BERT, built locally (no download).

Tests of text prompts use these: :func:`write_tiny_bert` writes a Hugging Face BERT
folder (``config.json``, weights, ``vocab.txt``) that ``AutoTokenizer`` and
``BertModel.from_pretrained`` read like ``bert-base-uncased``, and
:func:`write_tiny_grounding_dino` writes an mmdet config of the same architecture as
``grounding_dino_swin-t_pretrain_obj365_goldg_cap4m.py`` (Swin backbone, fusion encoder,
text-conditioned decoder, contrastive head) at toy sizes, with a seeded checkpoint.
"""

import json
import os.path as osp
from typing import Tuple

import torch

#: The WordPiece vocabulary of the tiny BERT: special tokens, the separators Grounding
#: DINO splits phrases on, a few whole words and every letter (plain and ``##``
#: continuation), so that any lower-case ASCII word tokenizes without ``[UNK]``.
_WORDS = ('car', 'person', 'dog', 'cat', 'bus', 'traffic', 'light', 'red', 'tree', 'zebra')
_LETTERS = tuple('abcdefghijklmnopqrstuvwxyz')
TINY_BERT_VOCAB = (
    ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '.', '?', ',', '-', '_', '(', ')')
    + _WORDS
    + _LETTERS
    + tuple('##' + c for c in _LETTERS)
)


def write_tiny_bert(folder: str, seed: int = 0, hidden_size: int = 32) -> str:
    """Write a random 1-layer BERT with its tokenizer files to ``folder``.

    Args:
        folder (str): Created if needed; it becomes a ``from_pretrained`` path.
        seed (int): Seeds the weights.
        hidden_size (int): Width of the BERT (Grounding DINO maps it to its own width).

    Returns:
        str: ``folder``.
    """
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(TINY_BERT_VOCAB),
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=True).save_pretrained(folder)
    with open(osp.join(folder, 'vocab.txt'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(TINY_BERT_VOCAB) + '\n')
    with open(osp.join(folder, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        tokenizer = dict(do_lower_case=True, model_max_length=256, tokenizer_class='BertTokenizer')
        json.dump(tokenizer, f)
    return folder


def tiny_grounding_dino_config(text_encoder: str, image_scale: Tuple[int, int] = (96, 128)) -> str:
    """The text of an mmdet config: Grounding DINO at toy sizes.

    Args:
        text_encoder (str): The BERT folder (``lang_model_name``).
        image_scale (tuple[int, int]): ``FixScaleResize`` scale of the test pipeline
            (the full model uses ``(800, 1333)``).

    Returns:
        str: Python source of the config.
    """
    return f"""\
default_scope = 'mmdet'
lang_model_name = {text_encoder!r}
dims = 256  # mmdet's Grounding DINO hard-codes 256-wide text position embeddings
model = dict(
    type='GroundingDINO',
    num_queries=30,
    with_box_refine=True,
    as_two_stage=True,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=False,
    ),
    language_model=dict(
        type='BertModel',
        name=lang_model_name,
        pad_to_max=False,
        use_sub_sentence_represent=True,
        special_tokens_list=['[CLS]', '[SEP]', '.', '?'],
        add_pooling_layer=True,
    ),
    backbone=dict(
        type='SwinTransformer',
        embed_dims=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=4,
        mlp_ratio=2,
        qkv_bias=True,
        patch_norm=True,
        out_indices=(1, 2, 3),
        convert_weights=False,
    ),
    neck=dict(
        type='ChannelMapper',
        in_channels=[32, 64, 128],
        kernel_size=1,
        out_channels=dims,
        act_cfg=None,
        bias=True,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4,
    ),
    encoder=dict(
        num_layers=1,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=dims, num_levels=4, num_heads=4, num_points=2),
            ffn_cfg=dict(embed_dims=dims, feedforward_channels=128),
        ),
        text_layer_cfg=dict(
            self_attn_cfg=dict(num_heads=2, embed_dims=dims),
            ffn_cfg=dict(embed_dims=dims, feedforward_channels=128),
        ),
        fusion_layer_cfg=dict(v_dim=dims, l_dim=dims, embed_dim=128, num_heads=2, init_values=1e-4),
    ),
    decoder=dict(
        num_layers=2,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=dims, num_heads=4),
            cross_attn_text_cfg=dict(embed_dims=dims, num_heads=4),
            cross_attn_cfg=dict(embed_dims=dims, num_heads=4, num_levels=4, num_points=2),
            ffn_cfg=dict(embed_dims=dims, feedforward_channels=128),
        ),
        post_norm_cfg=None,
    ),
    positional_encoding=dict(num_feats=dims // 2, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(
        type='GroundingDINOHead',
        num_classes=80,
        sync_cls_avg_factor=True,
        contrastive_cfg=dict(max_text_len=256, log_scale='auto'),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    ),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=10),
    ),
    train_cfg=None,
    test_cfg=dict(max_per_img=30),
)
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None, imdecode_backend='pillow'),
    dict(type='FixScaleResize', scale={tuple(image_scale)!r}, keep_ratio=True, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text',
                   'custom_entities', 'tokens_positive'),
    ),
]
test_dataloader = dict(dataset=dict(type='CocoDataset', pipeline=test_pipeline))
"""


def write_tiny_grounding_dino(folder: str, seed: int = 0) -> Tuple[str, str, str]:
    """Write a tiny BERT, a tiny Grounding DINO config and its seeded checkpoint.

    The checkpoint holds the whole detector's ``state_dict`` (BERT included, as mmdet's
    released Grounding DINO checkpoints do) as plain tensors, so it loads with
    ``weights_only=True``.

    Args:
        folder (str): Existing folder; ``bert/``, ``tiny_grounding_dino.py`` and
            ``tiny_grounding_dino.pth`` are written into it.
        seed (int): Seeds BERT and the detector.

    Returns:
        tuple[str, str, str]: The config path, the checkpoint path and the BERT folder.
    """
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    bert = write_tiny_bert(osp.join(folder, 'bert'), seed=seed)
    config = osp.join(folder, 'tiny_grounding_dino.py')
    with open(config, 'w', encoding='utf-8') as f:
        f.write(tiny_grounding_dino_config(bert))
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(seed)
        model = MODELS.build(Config.fromfile(config).model)
        model.init_weights()
    checkpoint = osp.join(folder, 'tiny_grounding_dino.pth')
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return config, checkpoint, bert


__all__ = [
    'TINY_BERT_VOCAB',
    'tiny_grounding_dino_config',
    'write_tiny_bert',
    'write_tiny_grounding_dino',
]
