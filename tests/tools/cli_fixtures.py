"""Helpers of the command-line tests: a tiny random SAM as a config and a checkpoint."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmsam.testing.parity import build_official_sam, sam_model_cfg

IMG_SIZE = 256
OFFICIAL_B_URL = 'https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth'


def scene(h=60, w=80, seed=0):
    """A small synthetic RGB image with two colour regions (uint8, seeded noise)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 40, 40)
    img[h // 3 :, w // 2 :] = (30, 30, 220)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


def model_args(tiny):
    """``mmsam`` options that load the tiny model on the CPU."""
    return ['--model', tiny['config'], '--weights', tiny['checkpoint'], '--device', 'cpu']


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny SAM config file, its random official-layout checkpoint and the official model."""
    pytest.importorskip('segment_anything')
    tmp = tmp_path_factory.mktemp('cli')
    official = build_official_sam('tiny', img_size=IMG_SIZE, window_size=4, seed=5)
    checkpoint = tmp / 'tiny_official.pth'
    torch.save(official.state_dict(), checkpoint)
    model_cfg = sam_model_cfg('tiny', img_size=IMG_SIZE, window_size=4)
    config = tmp / 'sam_tiny.py'
    config.write_text(f"default_scope = 'mmdet'\nmodel = {model_cfg!r}\n")
    hub_config = tmp / 'sam_tiny_hub.py'
    hub_config.write_text(config.read_text() + f'load_from = {OFFICIAL_B_URL!r}\n')
    image = tmp / 'scene.png'
    Image.fromarray(scene()).save(image)
    return dict(
        official=official,
        checkpoint=str(checkpoint),
        config=str(config),
        hub_config=str(hub_config),
        image=str(image),
        tmp=tmp,
    )
