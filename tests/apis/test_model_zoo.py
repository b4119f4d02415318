"""get_model / list_models: names, every checkpoint layout, the hub cache, bad checkpoints.

Models are reduced (the ``tiny`` encoder at 256 px) through ``get_model``'s config
overrides; their outputs are compared with the official ``segment_anything`` model
carrying the same random weights.
"""

import shutil
from collections import OrderedDict
from urllib.error import URLError

import pytest
import torch

import mmsam
from mmsam.apis import convert_checkpoint, get_model, list_models
from mmsam.apis.model_zoo import (
    CheckpointDownloadError,
    arch_overrides,
    cached_checkpoint_path,
    get_model_info,
    load_pretrained,
)
from mmsam.testing import build_official_sam
from mmsam.testing.hf_layout import official_to_hf_state_dict
from mmsam.utils.checkpoint_io import CheckpointMismatchError
from mmsam.utils.checkpoint_keys import convert_official_to_mmsam, infer_encoder_arch

segment_anything = pytest.importorskip('segment_anything')

SAM_B = 'sam_vit-base-p16_3rdparty_sa1b-1024px'
VIT_B = 'vit-base-p16_sam-pre_3rdparty_sa1b-1024px'
IMG = 256
ATOL = 1e-4


@pytest.fixture(scope='module')
def official():
    return build_official_sam('tiny', img_size=IMG, window_size=4, seed=1)


@pytest.fixture(scope='module')
def tiny_info(official):
    return infer_encoder_arch(convert_official_to_mmsam(official.state_dict()))


@pytest.fixture(scope='module')
def files(official, tmp_path_factory):
    """The official tiny weights as the official file, converted, and in HF's layout."""
    root = tmp_path_factory.mktemp('zoo')
    paths = dict(
        official=str(root / 'sam_tiny_official.pth'),
        mmsam=str(root / 'sam_tiny_mmsam.pth'),
        backbone=str(root / 'vit_tiny_mmpretrain.pth'),
        hf=str(root / 'model.safetensors'),
    )
    torch.save(official.state_dict(), paths['official'])
    convert_checkpoint(paths['official'], paths['mmsam'])
    convert_checkpoint(paths['official'], paths['backbone'], backbone_only=True)
    from safetensors.torch import save_file

    hf = official_to_hf_state_dict(official.state_dict(), positional='model')
    save_file({k: v.contiguous() for k, v in hf.items()}, paths['hf'])
    return paths


def _image():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, IMG, IMG, generator=gen)


def _max_output_diff(official, model) -> float:
    """Largest difference over image embeddings, prompt embeddings, mask logits, IoU."""
    gen = torch.Generator().manual_seed(1)
    x = _image()
    points = (torch.rand(2, 3, 2, generator=gen) * IMG, torch.tensor([[1, 0, 1], [1, 1, -1]]))
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.0], [0.0, 0.0, 255.0, 255.0]])
    masks = torch.randn(2, 1, 4 * IMG // 16, 4 * IMG // 16, generator=gen)
    diffs = []
    with torch.no_grad():
        ref_emb = official.image_encoder(x)
        emb = model.extract_feat(x)[0]
        diffs.append((emb - ref_emb).abs().max())
        for prompt in (dict(points=points), dict(boxes=boxes), dict(points=points, masks=masks)):
            kwargs = {**dict(points=None, boxes=None, masks=None), **prompt}
            ref_sparse, ref_dense = official.prompt_encoder(**kwargs)
            sparse, dense = model.prompt_encoder(**kwargs)
            diffs += [(sparse - ref_sparse).abs().max(), (dense - ref_dense).abs().max()]
            ref_logits, ref_iou = official.mask_decoder(
                image_embeddings=ref_emb,
                image_pe=official.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=ref_sparse,
                dense_prompt_embeddings=ref_dense,
                multimask_output=True,
            )
            logits, iou = model.predict_prompts(
                emb, kwargs['points'], kwargs['boxes'], kwargs['masks'], multimask_output=True
            )
            diffs += [(logits - ref_logits).abs().max(), (iou - ref_iou).abs().max()]
    return max(float(d) for d in diffs)


def test_list_models_and_info():
    names = list_models()
    assert len(names) == 17
    assert list_models('mobile-sam') == ['mobile-sam_tinyvit-5m_3rdparty_sa1b-1024px']
    assert list_models('efficientvit-sam') == [
        *(f'efficientvit-sam_{s}_3rdparty_sa1b-512px' for s in ('l0', 'l1', 'l2')),
        *(f'efficientvit-sam_{s}_3rdparty_sa1b-1024px' for s in ('xl0', 'xl1')),
    ]
    assert list_models('*hq*') == [
        'light-hq-sam_tinyvit-5m_3rdparty_hqseg44k-1024px',
        *(f'sam-hq_vit-{s}-p16_3rdparty_hqseg44k-1024px' for s in ('base', 'huge', 'large')),
    ]
    assert list_models('sam_vit') == [
        'sam_vit-base-p16_3rdparty_sa1b-1024px',
        'sam_vit-huge-p16_3rdparty_sa1b-1024px',
        'sam_vit-large-p16_3rdparty_sa1b-1024px',
    ]
    assert list_models('vit-*sam-pre') == sorted(
        f'vit-{s}-p16_sam-pre_3rdparty_sa1b-1024px' for s in ('base', 'large', 'huge')
    )
    assert mmsam.list_models is list_models and mmsam.get_model is get_model
    info = get_model_info(SAM_B.upper())
    assert info['Weights'].endswith('/sam_vit_b_01ec64.pth')
    assert get_model_info('vit-huge-p16_sam-pre_3rdparty_sa1b-1024px')['Metadata'] == {
        'FLOPs': 2982000000000,
        'Parameters': 637000000,
        'Training Data': ['SA-1B'],
    }


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(ValueError, match=r"unknown model name 'sam_vit-b'.*did you mean.*sam_vit-"):
        get_model('sam_vit-b')


def test_converted_official_file_loads_by_name_and_matches(official, files, tiny_info):
    model = get_model(SAM_B, pretrained=files['mmsam'], **arch_overrides(tiny_info, False))
    assert type(model).__name__ == 'SAM' and not model.training
    assert model._metainfo['Name'] == SAM_B
    assert _max_output_diff(official, model) < ATOL


@pytest.mark.parametrize('kind', ['official', 'hf'])
def test_official_and_hf_files_are_converted_on_load(official, files, tiny_info, kind):
    model = get_model(SAM_B, pretrained=files[kind], **arch_overrides(tiny_info, False))
    assert _max_output_diff(official, model) < ATOL


@pytest.mark.parametrize('kind', ['backbone', 'official', 'mmsam'])
def test_headless_model_gives_the_official_image_embeddings(official, files, tiny_info, kind):
    model = get_model(VIT_B, pretrained=files[kind], **arch_overrides(tiny_info, True))
    assert type(model).__name__ == 'ImageClassifier'
    x = _image()
    with torch.no_grad():
        feats = model.extract_feat(x)
        ref = official.image_encoder(x)
    assert len(feats) == 1 and feats[0].shape == (1, 256, IMG // 16, IMG // 16)
    assert (feats[0] - ref).abs().max() < ATOL


def test_headless_features_at_1024():
    tiny = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
    model = get_model(VIT_B, backbone=dict(arch=dict(_delete_=True, **tiny)))
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(2, 3, 1024, 1024))
    assert [f.shape for f in feats] == [(2, 256, 64, 64)]


def test_mmpretrain_vitsam_weights_load_strict_and_match(tmp_path, tiny_info):
    from mmpretrain.models import ViTSAM

    from mmsam.models.backbones.sam_image_encoder import SAMImageEncoder
    from mmsam.testing import randomize_parameters

    settings = dict(tiny_info['arch_settings'])
    torch.manual_seed(5)  # randomize_parameters adds noise to the initial weights
    theirs = ViTSAM(arch=dict(settings), img_size=IMG, window_size=4)
    theirs.eval()  # mmpretrain's train() returns None
    randomize_parameters(theirs, seed=5)
    ours = SAMImageEncoder(arch=dict(settings), img_size=IMG, window_size=4).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = _image()
    with torch.no_grad():
        ref = theirs(x)[0]
        assert (ours(x)[0] - ref).abs().max() < ATOL
    # the same weights as mmpretrain publishes them: an ImageClassifier checkpoint
    ckpt = tmp_path / 'vit_tiny_sam_mmpretrain.pth'
    state = OrderedDict(('backbone.' + k, v) for k, v in theirs.state_dict().items())
    torch.save({'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': state}, ckpt)
    model = get_model(VIT_B, pretrained=str(ckpt), **arch_overrides(tiny_info, True))
    with torch.no_grad():
        assert (model.extract_feat(x)[0] - ref).abs().max() < ATOL


def test_mmpretrain_get_model_keeps_its_own_names():
    import mmpretrain

    tiny = dict(
        _delete_=True,
        embed_dims=64,
        num_layers=2,
        num_heads=2,
        feedforward_channels=128,
        global_attn_indexes=[1],
    )
    model = mmpretrain.get_model(VIT_B, backbone=dict(arch=tiny, img_size=IMG))
    assert type(model.backbone).__name__ == 'ViTSAM'


def test_config_file_and_config_object(official, files, tiny_info):
    from mmengine.config import Config

    path = get_model_info(SAM_B)['Config']
    model = get_model(path, pretrained=files['mmsam'], **arch_overrides(tiny_info, False))
    assert model._metainfo is None
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'model': arch_overrides(tiny_info, False)})
    with pytest.raises(ValueError, match='no pre-defined weights'):
        get_model(cfg, pretrained=True)
    cfg.load_from = files['official']
    model = get_model(cfg, pretrained=True)
    assert _max_output_diff(official, model) < ATOL


# ------------------------------------------------------------------ pretrained=True
@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    hub = tmp_path / 'hub'
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(hub))
    return hub


def test_pretrained_true_loads_from_the_cache_without_network(
    official, files, tiny_info, hub_dir, monkeypatch
):
    url = get_model_info(SAM_B)['Weights']
    cached = cached_checkpoint_path(url)
    assert cached == str(hub_dir / 'checkpoints' / 'sam_vit_b_01ec64.pth')
    (hub_dir / 'checkpoints').mkdir(parents=True)
    shutil.copy(files['official'], cached)

    def no_network(*args, **kwargs):
        raise AssertionError('the network was used')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    model = get_model(SAM_B, pretrained=True, **arch_overrides(tiny_info, False))
    assert _max_output_diff(official, model) < ATOL


def test_pretrained_true_downloads_once(files, tiny_info, hub_dir, monkeypatch):
    calls = []

    def fake_download(url, dst, progress=True, **kwargs):
        calls.append((url, progress))
        shutil.copy(files['backbone'], dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    for _ in range(2):
        get_model(VIT_B, pretrained=True, **arch_overrides(tiny_info, True))
    assert calls == [(get_model_info(VIT_B)['Weights'], True)]


def test_no_network_gives_one_clear_message(tiny_info, hub_dir, monkeypatch):
    def offline(url, dst, progress=True, **kwargs):
        raise URLError('[Errno -3] Temporary failure in name resolution')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    url = get_model_info(SAM_B)['Weights']
    with pytest.raises(CheckpointDownloadError) as info:
        get_model(SAM_B, pretrained=True, **arch_overrides(tiny_info, False))
    message = str(info.value)
    assert url in message
    assert str(hub_dir / 'checkpoints' / 'sam_vit_b_01ec64.pth') in message
    assert 'pretrained=' in message
    assert not (hub_dir / 'checkpoints' / 'sam_vit_b_01ec64.pth').exists()


# ------------------------------------------------------------------ bad checkpoints
@pytest.fixture(scope='module')
def bad_files(files, tmp_path_factory):
    from mmpretrain.models import ResNet

    root = tmp_path_factory.mktemp('bad')
    data = open(files['mmsam'], 'rb').read()
    paths = dict(
        truncated=root / 'truncated.pth',
        text=root / 'notes.pth',
        resnet=root / 'resnet18.pth',
        other_size=root / 'sam_small.pth',
        headless=files['backbone'],
        missing=root / 'does_not_exist.pth',
    )
    paths['truncated'].write_bytes(data[: len(data) // 2])
    paths['text'].write_text('not a checkpoint\n')
    resnet = ResNet(depth=18, stem_channels=16, base_channels=16)
    torch.save({'state_dict': resnet.state_dict()}, paths['resnet'])
    small = build_official_sam('small', img_size=IMG, window_size=4, seed=2, randomize=False)
    torch.save(small.state_dict(), paths['other_size'])
    return {k: str(v) for k, v in paths.items()}


BAD_CASES = {
    'truncated': (ValueError, r'not a readable PyTorch checkpoint'),
    'text': (ValueError, r'not a readable PyTorch checkpoint'),
    'resnet': (ValueError, r'not a SAM state dict.*conv1'),
    'other_size': (
        CheckpointMismatchError,
        r'custom ViT \(128 wide, 4 layers.*custom ViT \(64 wide, 2 layers.*'
        r'unexpected keys \(\d+\): backbone\.layers\.2.*shape mismatches',
    ),
    'headless': (CheckpointMismatchError, r'image encoder only.*missing keys \(137\): prompt_enc'),
    'missing': (FileNotFoundError, r'does not exist'),
}


@pytest.mark.parametrize('case', list(BAD_CASES))
def test_bad_checkpoints_are_refused_whole(official, bad_files, tiny_info, case):
    from mmdet.registry import MODELS
    from mmengine.config import Config

    cfg = Config.fromfile(get_model_info(SAM_B)['Config'])
    cfg.merge_from_dict({'model': arch_overrides(tiny_info, False)})
    model = MODELS.build(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    error, pattern = BAD_CASES[case]
    with pytest.raises(error, match=pattern) as info:
        load_pretrained(model, bad_files[case])
    assert bad_files[case] in str(info.value)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing half-loaded
    with pytest.raises(error):
        get_model(SAM_B, pretrained=bad_files[case], **arch_overrides(tiny_info, False))
