"""Helpers of the ``mmsam serve`` tests: a tiny random SAM, a folder of images, the app."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmsam.testing import randomize_parameters, sam_model_cfg, smooth_image

pytest.importorskip('starlette')
pytest.importorskip('httpx')

IMG_SIZE = 256
WINDOW = 4
#: image name -> (height, width, seed); one in a sub-folder, one wider than tall
IMAGES = {'a.png': (120, 160, 1), 'sub/b.jpg': (90, 70, 2)}


def build_tiny_sam():
    """A tiny mmsam SAM (256 px input, random seeded weights), eval mode."""
    from mmdet.registry import MODELS

    import mmsam.registration  # noqa: F401  (registers the modules)

    torch.manual_seed(0)
    model = MODELS.build(sam_model_cfg('tiny', img_size=IMG_SIZE, window_size=WINDOW))
    return randomize_parameters(model, seed=3).eval()


def write_model_files(folder):
    """The tiny SAM as ``mmsam`` command files: ``(model, config path, checkpoint path)``."""
    model = build_tiny_sam()
    weights = folder / 'tiny.pth'
    torch.save(model.state_dict(), weights)
    config = folder / 'tiny.py'
    model_cfg = sam_model_cfg('tiny', img_size=IMG_SIZE, window_size=WINDOW)
    config.write_text(f"default_scope = 'mmdet'\nmodel = {model_cfg!r}\n")
    return model, config, weights


@pytest.fixture(scope='session')
def tiny_sam():
    return build_tiny_sam()


def write_images(folder) -> None:
    for name, (h, w, seed) in IMAGES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(smooth_image(h, w, seed=seed))
        image.save(path, quality=95) if name.endswith('.jpg') else image.save(path)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / 'images'
    write_images(folder)
    return folder


def make_app(model, folder, limits=None, dtype='float32', amg_points=4):
    """The app over ``folder`` (work folder ``folder/.mmsam``), and its parts."""
    from mmsam.serve import AnnotationStore, ImageFolder, Limits, ServeModel, create_app

    work = folder / '.mmsam'
    limits = limits or Limits()
    engine = ServeModel(
        model,
        'tiny',
        str(work),
        embedding_dtype=dtype,
        amg_options=dict(
            points_per_side=amg_points, pred_iou_thresh=0.0, stability_score_thresh=0.0
        ),
    )
    image_folder = ImageFolder(str(folder), str(work), limits)
    store = AnnotationStore(str(work), limits.max_annotations)
    return create_app(image_folder, engine, store), engine


@pytest.fixture
def client(tiny_sam, image_folder):
    from starlette.testclient import TestClient

    app, _ = make_app(tiny_sam, image_folder)
    with TestClient(app) as c:
        yield c


def rgb_of(folder, name) -> np.ndarray:
    from mmsam.apis import load_image

    return load_image(str(folder / name))
