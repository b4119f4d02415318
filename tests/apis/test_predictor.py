"""SAMPredictor against the official ``SamPredictor`` on the same random weights."""

import numpy as np
import pytest
import torch

from mmsam.apis import SAMPredictor
from mmsam.testing import build_sam_pair, smooth_image

segment_anything = pytest.importorskip('segment_anything')
from segment_anything import SamPredictor  # noqa: E402

IMG_SIZE = 256
ATOL = 1e-5


@pytest.fixture(scope='module')
def pair():
    official, ours = build_sam_pair('tiny', img_size=IMG_SIZE, window_size=4, seed=1)
    return SamPredictor(official), SAMPredictor(ours)


@pytest.fixture(scope='module')
def image():
    return smooth_image(120, 200, seed=3)


@pytest.fixture(scope='module')
def set_pair(pair, image):
    ref, ours = pair
    ref.set_image(image)
    ours.set_image(image)
    return ref, ours


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _assert_same(ref_out, out, ref_logits=None, atol=ATOL):
    """Same shapes and dtypes, values to ``atol``, and the same boolean masks.

    The two models' logits differ by ~1e-6, so a mask pixel may differ only where the
    official logit is that close to the threshold (``ref_logits`` must then be given).
    """
    for name, r, o in zip(('masks', 'scores', 'low_res_logits'), ref_out, out):
        r, o = _np(r), _np(o)
        assert r.shape == o.shape, (name, r.shape, o.shape)
        assert r.dtype == o.dtype, (name, r.dtype, o.dtype)
        if r.dtype != bool:
            np.testing.assert_allclose(o, r, atol=atol, rtol=0, err_msg=name)
            continue
        differ = r != o
        if differ.any():
            assert ref_logits is not None, f'{name}: {differ.sum()} pixels differ'
            margin = np.abs(_np(ref_logits)[differ]).max()
            assert margin < 1e-4, f'{name}: a pixel differs with official logit {margin}'


def _official_predict(ref, **kwargs):
    """The official outputs and its full-size logits, for the masks' comparison."""
    return ref.predict(**kwargs), ref.predict(**kwargs, return_logits=True)[0]


def test_embedding_and_sizes(set_pair, image):
    ref, ours = set_pair
    assert ours.is_image_set
    assert ours.original_size == tuple(ref.original_size) == image.shape[:2]
    assert ours.input_size == tuple(ref.input_size) == (154, 256)
    emb = ours.get_image_embedding()
    assert emb.shape == (1, 256, IMG_SIZE // 16, IMG_SIZE // 16)
    np.testing.assert_allclose(emb.numpy(), ref.get_image_embedding().numpy(), atol=1e-4)


CASES = {
    'one_point': dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1])),
    'two_points': dict(point_coords=np.array([[60.0, 40.0], [150, 90]]), point_labels=[1, 0]),
    'box': dict(box=np.array([20, 10, 150, 100])),
    'box_points': dict(
        point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]), box=[20, 10, 150, 100]
    ),
    'no_prompt': dict(),
}


@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('multimask', [True, False])
def test_predict_matches_official(set_pair, case, multimask):
    ref, ours = set_pair
    kwargs = CASES[case]
    ref_kwargs = {k: np.asarray(v) for k, v in kwargs.items()}
    ref_out, ref_logits = _official_predict(ref, **ref_kwargs, multimask_output=multimask)
    out = ours.predict(**kwargs, multimask_output=multimask)
    c = 3 if multimask else 1
    assert out[0].shape == (c, 120, 200) and out[0].dtype == bool
    assert out[1].shape == (c,) and out[2].shape == (c, 64, 64)
    _assert_same(ref_out, out, ref_logits)
    assert 0 < out[0].sum() < out[0].size  # the masks are neither empty nor full


def test_return_logits_and_mask_input(set_pair):
    ref, ours = set_pair
    kwargs = dict(point_coords=np.array([[100.0, 60.0]]), point_labels=np.array([1]))
    ref_out = ref.predict(**kwargs, return_logits=True)
    out = ours.predict(**kwargs, return_logits=True)
    assert out[0].dtype == np.float32
    _assert_same(ref_out, out)
    best = int(np.argmax(out[1]))
    mask_input = out[2][best][None]
    ref_out, ref_logits = _official_predict(
        ref, **kwargs, mask_input=mask_input, multimask_output=False
    )
    out = ours.predict(**kwargs, mask_input=mask_input, multimask_output=False)
    _assert_same(ref_out, out, ref_logits)


def test_batched_boxes_and_points(set_pair):
    ref, ours = set_pair
    boxes = np.array([[10, 10, 90, 80], [50, 20, 190, 110], [0, 0, 199, 119]], dtype=float)
    points = np.array([[[30.0, 30.0]], [[120, 60]], [[100, 100]]])
    labels = np.ones((3, 1))
    t = ref.transform
    in_points = torch.as_tensor(t.apply_coords(points, ref.original_size), dtype=torch.float)
    in_labels = torch.as_tensor(labels, dtype=torch.int)
    in_boxes = torch.as_tensor(t.apply_boxes(boxes, ref.original_size), dtype=torch.float)
    ref_out = ref.predict_torch(in_points, in_labels, in_boxes)
    ref_logits = ref.predict_torch(in_points, in_labels, in_boxes, return_logits=True)[0]
    out = ours.predict(point_coords=points, point_labels=labels, box=boxes)
    assert out[0].shape == (3, 3, 120, 200)
    assert out[1].shape == (3, 3) and out[2].shape == (3, 3, 64, 64)
    _assert_same(ref_out, out, ref_logits)
    # boxes alone, batched, single output
    ref_out = ref.predict_torch(None, None, in_boxes, multimask_output=False)
    ref_logits = ref.predict_torch(
        None, None, in_boxes, multimask_output=False, return_logits=True
    )[0]
    out = ours.predict(box=boxes, multimask_output=False)
    assert out[0].shape == (3, 1, 120, 200)
    _assert_same(ref_out, out, ref_logits)
    # one point set repeated for every box equals giving it per box
    single = ours.predict(point_coords=points[1], point_labels=labels[1], box=boxes)
    repeated = ours.predict(
        point_coords=np.repeat(points[1:2], 3, 0), point_labels=np.ones((3, 1)), box=boxes
    )
    np.testing.assert_array_equal(single[1], repeated[1])


def test_bgr_input(pair, image):
    ref, ours = pair
    ref.set_image(image[..., ::-1].copy(), image_format='BGR')
    ours.set_image(image[..., ::-1].copy(), image_format='BGR')
    kwargs = dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]))
    ref_out, ref_logits = _official_predict(ref, **kwargs)
    _assert_same(ref_out, ours.predict(**kwargs), ref_logits)
    # the same embedding as the RGB image
    rgb = SAMPredictor(ours.model)
    rgb.set_image(image)
    assert torch.equal(rgb.get_image_embedding(), ours.get_image_embedding())


@pytest.mark.parametrize('hw', [(300, 90), (64, 64)])
def test_non_square_images(pair, hw):
    ref, ours = pair
    image = smooth_image(*hw, seed=hw[0])
    ref.set_image(image)
    ours.set_image(image)
    assert ours.input_size == tuple(ref.input_size)
    kwargs = dict(point_coords=np.array([[hw[1] / 2, hw[0] / 3]]), point_labels=np.array([1]))
    ref_out, ref_logits = _official_predict(ref, **kwargs)
    _assert_same(ref_out, ours.predict(**kwargs), ref_logits)
    box = np.array([2, 3, hw[1] - 5, hw[0] - 7])
    ref_out, ref_logits = _official_predict(ref, box=box)
    _assert_same(ref_out, ours.predict(box=box), ref_logits)


def test_set_image_embedding_reuses_a_cached_embedding(pair, image):
    _, ours = pair
    ours.set_image(image)
    kwargs = dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]))
    expected = ours.predict(**kwargs)
    cached = ours.get_image_embedding().numpy().copy()
    server = SAMPredictor(ours.model)
    server.set_image_embedding(cached, original_size=image.shape[:2])
    assert server.input_size == ours.input_size
    got = server.predict(**kwargs)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)
    server.reset_image()
    assert not server.is_image_set and server.original_size is None
    with pytest.raises(ValueError, match='embedding must have shape'):
        server.set_image_embedding(np.zeros((1, 256, 8, 8), np.float32), (10, 10))
    with pytest.raises(ValueError, match='input_size'):
        server.set_image_embedding(cached, (120, 200), input_size=(256, 256))


def test_set_torch_image_matches_set_image(pair, image):
    ref, ours = pair
    resized = ref.transform.apply_image(image)
    x = torch.as_tensor(resized).permute(2, 0, 1)[None]
    ours.set_torch_image(x, image.shape[:2])
    emb = ours.get_image_embedding().clone()
    ours.set_image(image)
    assert torch.equal(emb, ours.get_image_embedding())


def test_bad_input(pair, image):
    _, ours = pair
    fresh = SAMPredictor(ours.model)
    with pytest.raises(RuntimeError, match='set_image'):
        fresh.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(RuntimeError, match='set_image'):
        fresh.get_image_embedding()
    ours.set_image(image)
    with pytest.raises(ValueError, match='point_coords must have shape'):
        ours.predict(point_coords=[1, 2, 3], point_labels=[1])
    with pytest.raises(ValueError, match='point_labels must have shape'):
        ours.predict(point_coords=[[1, 2], [3, 4]], point_labels=[1])
    with pytest.raises(ValueError, match='without point_labels'):
        ours.predict(point_coords=[[1, 2]])
    with pytest.raises(ValueError, match='x2 >= x1'):
        ours.predict(box=[50, 10, 20, 40])
    with pytest.raises(ValueError, match='box must have shape'):
        ours.predict(box=[1, 2, 3])
    with pytest.raises(ValueError, match='mask_input must have shape'):
        ours.predict(point_coords=[[1, 2]], point_labels=[1], mask_input=np.zeros((1, 256, 256)))
    with pytest.raises(ValueError, match='same N'):
        ours.predict(box=np.zeros((2, 4)), point_coords=np.zeros((3, 1, 2)), point_labels=[[1]] * 3)
    with pytest.raises(ValueError, match='finite'):
        ours.predict(point_coords=[[np.nan, 2]], point_labels=[1])
    with pytest.raises(ValueError, match='uint8'):
        ours.set_image(image.astype(np.float32))
    with pytest.raises(TypeError, match='mmsam SAM'):
        SAMPredictor(torch.nn.Linear(2, 2))
