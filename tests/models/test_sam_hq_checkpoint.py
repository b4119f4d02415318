"""SAM-HQ's official checkpoint layout (``sam_hq_vit_*.pth``: SAM's keys plus
``mask_decoder.hf_token``, ``hf_mlp``, ``compress_vit_feat``, ``embedding_encoder``,
``embedding_maskfeature``) loads strictly through the one loading path, by config and
through ``tools/model_converters/sam2mmsam.py``; a SAM checkpoint is refused by a SAM-HQ
model (and the reverse) with the file name and the keys."""

import warnings

import pytest
import torch

import mmsam
from mmsam.testing.sam_hq_parity import build_light_hq_sam_pair, config_path
from mmsam.testing.tool_scripts import load_tool
from mmsam.utils.checkpoint_io import CheckpointMismatchError
from mmsam.utils.checkpoint_keys import convert_mmsam_to_official, official_key_to_mmsam

pytest.importorskip('timm')
pytest.importorskip('segment_anything_hq')

LIGHT_NAME = 'light-hq-sam_tinyvit-5m_3rdparty_hqseg44k-1024px'
VIT_B_CONFIG = config_path('configs/sam_hq/sam-hq_vit-base-p16_3rdparty_hqseg44k-1024px.py')
HQ_PARTS = ('hf_token', 'hf_mlp', 'compress_vit_feat', 'embedding_encoder', 'embedding_maskfeature')
CLASSIFIER = ('image_encoder.norm_head.', 'image_encoder.head.')  # TinyViT's unused head


@pytest.fixture(scope='module')
def light_file(tmp_path_factory):
    """A file with exactly the layout of ``sam_hq_vit_tiny.pth`` (the reference's state
    dict, seeded random weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        official, _ = build_light_hq_sam_pair(seed=3)
    path = tmp_path_factory.mktemp('sam_hq') / 'sam_hq_vit_tiny.pth'
    state = official.state_dict()
    torch.save(state, path)
    return str(path), state


def _assert_same_weights(model, official_state):
    own = model.state_dict()
    used = 0
    for key, value in official_state.items():
        if key.startswith(CLASSIFIER):
            continue
        assert torch.equal(own[official_key_to_mmsam(key)], value), key
        used += 1
    assert used == len(own)  # every model key came from the file


@pytest.mark.full_size
def test_official_vit_b_layout_loads_by_config_strictly(tmp_path):
    """``sam_model_registry['vit_b']`` of segment_anything_hq, as the published file."""
    from segment_anything_hq import sam_model_registry

    torch.manual_seed(0)
    official = sam_model_registry['vit_b']()
    state = official.state_dict()
    assert {k.split('.')[1] for k in state if k.startswith('mask_decoder.')} >= set(HQ_PARTS)
    path = tmp_path / 'sam_hq_vit_b.pth'
    torch.save(state, path)
    del official
    model = mmsam.get_model(VIT_B_CONFIG, pretrained=str(path))
    _assert_same_weights(model, state)
    assert sum(p.numel() for p in model.parameters()) == 94_806_576  # as the metafile says


def test_light_hq_sam_loads_by_name_and_through_the_converter(light_file, tmp_path, capsys):
    path, state = light_file
    _assert_same_weights(mmsam.get_model(LIGHT_NAME, pretrained=path), state)
    module = load_tool('tools/model_converters/sam2mmsam.py')
    dst = tmp_path / 'sam_hq_vit_tiny_mmsam.pth'
    assert module.main([path, str(dst)]) == 0
    printed = capsys.readouterr().out
    assert 'full Light HQ-SAM' in printed and LIGHT_NAME in printed
    _assert_same_weights(mmsam.get_model(LIGHT_NAME, pretrained=str(dst)), state)
    # and back to the official names (less TinyViT's unused classifier)
    back = convert_mmsam_to_official(mmsam.get_model(LIGHT_NAME).state_dict())
    assert set(back) == {k for k in state if not k.startswith(CLASSIFIER)}


def test_sam_and_sam_hq_files_are_refused_by_the_other_model(light_file, tmp_path):
    path, state = light_file
    sam_file = tmp_path / 'mobile_sam.pt'  # the same file without SAM-HQ's parts
    hq_keys = [k for k in state if k.split('.')[1] in HQ_PARTS]
    torch.save({k: v for k, v in state.items() if k not in hq_keys}, sam_file)
    with pytest.raises(CheckpointMismatchError, match='mobile_sam.pt') as err:
        mmsam.get_model(LIGHT_NAME, pretrained=str(sam_file))
    message = str(err.value)
    assert 'without SAM-HQ' in message and 'mask_decoder.hf_token.weight' in message
    with pytest.raises(CheckpointMismatchError, match='sam_hq_vit_tiny.pth') as err:
        mmsam.get_model('mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px', pretrained=path)
    assert 'It is a SAM-HQ checkpoint' in str(err.value)


@pytest.mark.parametrize(
    'name',
    [f'sam-hq_vit-{s}-p16_3rdparty_hqseg44k-1024px' for s in ('base', 'large', 'huge')]
    + [LIGHT_NAME],
)
def test_configs_have_the_official_decoder_and_the_metafile_sizes(name):
    """Each config's decoder has the keys and shapes of the official ``MaskDecoderHQ`` built
    as ``segment_anything_hq.build_sam`` builds it (``vit_dim``: the ViT's width, 160 for
    Light HQ-SAM), and the whole model the metafile's parameter count."""
    from segment_anything_hq.modeling import MaskDecoderHQ, TwoWayTransformer

    from mmsam.apis.model_index import get_model_info

    with torch.device('meta'):
        model = mmsam.get_model(name)
    backbone = model.backbone
    # build_sam: the ViT's width; build_sam_vit_t: 160, TinyViT-5M's stage-2 channels
    vit_dim = getattr(backbone, 'embed_dims', None) or backbone.arch_settings['channels'][2]
    with torch.device('meta'):
        official = MaskDecoderHQ(
            transformer_dim=256,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            vit_dim=vit_dim,
        )
    ours = {k: tuple(v.shape) for k, v in model.mask_decoder.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in official.state_dict().items()}
    count = sum(p.numel() for p in model.parameters())
    assert count == get_model_info(name)['Metadata']['Parameters']
