"""load_image: the files users have become (H, W, 3) uint8 RGB, or a clear error."""

import numpy as np
import pytest
from PIL import Image

from mmsam.apis.image_io import ImageReadError, list_images, load_image, to_rgb_uint8


def _rgb(h=6, w=8):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_rgb_png_roundtrip(tmp_path):
    img = _rgb()
    Image.fromarray(img).save(tmp_path / 'a.png')
    out = load_image(tmp_path / 'a.png')
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, img)


def test_grayscale_repeated(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(gray, 'L').save(tmp_path / 'g.png')
    out = load_image(str(tmp_path / 'g.png'))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = 10
    rgba[..., 3] = 0  # fully transparent: colours kept, alpha dropped
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    out = load_image(tmp_path / 'a.png')
    assert out.shape == (4, 5, 3)
    assert (out[..., 0] == 200).all() and (out[..., 1] == 10).all() and (out[..., 2] == 0).all()


def test_16bit_scaled(tmp_path):
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / 'd.png')
    assert Image.open(tmp_path / 'd.png').mode.startswith('I')
    out = load_image(tmp_path / 'd.png')
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])
    assert (out[..., 0] == out[..., 2]).all()


def test_palette_expanded(tmp_path):
    pal = Image.new('P', (3, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 2, 1, 0])
    pal.save(tmp_path / 'p.png')
    out = load_image(tmp_path / 'p.png')
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(out[0, 2], [0, 0, 255])


def test_exif_orientation_applied(tmp_path):
    # stored 4 wide x 2 high, orientation 6 = rotate 90 degrees clockwise to view
    img = np.zeros((2, 4, 3), np.uint8)
    img[:, 0] = 255  # left column white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(img).save(tmp_path / 'r.jpg', exif=exif, quality=100)
    out = load_image(tmp_path / 'r.jpg')
    assert out.shape == (4, 2, 3)
    # after a clockwise rotation the stored left column is the top row
    assert out[0].mean() > 200 and out[-1].mean() < 50


def test_missing_not_image_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.png'):
        load_image(tmp_path / 'nope.png')
    (tmp_path / 'text.jpg').write_text('hello, I am not a picture')
    with pytest.raises(ImageReadError, match='not an image file.*text.jpg'):
        load_image(tmp_path / 'text.jpg')
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(ImageReadError, match='empty.*empty.png'):
        load_image(tmp_path / 'empty.png')
    with pytest.raises(FileNotFoundError, match='folder'):
        load_image(tmp_path)
    with pytest.raises(ImageReadError, match='empty'):
        load_image(np.zeros((0, 4, 3), np.uint8))


def test_truncated_file(tmp_path):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / 't.png')
    data = (tmp_path / 't.png').read_bytes()
    (tmp_path / 't.png').write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match='t.png'):
        load_image(tmp_path / 't.png')


def test_arrays():
    np.testing.assert_array_equal(load_image(_rgb()), _rgb())
    gray = np.full((3, 4), 7, np.uint8)
    assert load_image(gray).shape == (3, 4, 3)
    assert (load_image(np.ones((2, 2, 4), np.float32)) == 255).all()
    np.testing.assert_array_equal(
        to_rgb_uint8(np.array([[0, 65535]], np.uint16))[0, :, 1], [0, 255]
    )
    assert (load_image(np.ones((2, 2), bool)) == 255).all()
    with pytest.raises(ValueError, match='shape'):
        load_image(np.zeros((2, 2, 2), np.uint8))


def test_huge_image(tmp_path):
    img = np.zeros((6000, 8000), np.uint8)
    img[::97] = 255
    Image.fromarray(img).save(tmp_path / 'huge.png', compress_level=1)
    out = load_image(tmp_path / 'huge.png')
    assert out.shape == (6000, 8000, 3) and out.dtype == np.uint8
    assert out[97, 5, 1] == 255 and out[98, 5, 1] == 0


def test_list_images(tmp_path):
    (tmp_path / 'sub').mkdir()
    for name in ('b.JPG', 'a.png', 'sub/c.tif', 'notes.txt', '.hidden.png'):
        (tmp_path / name).write_bytes(b'x')
    found = [p[len(str(tmp_path)) + 1 :] for p in list_images(tmp_path)]
    assert found == ['a.png', 'b.JPG', 'sub/c.tif']
    assert list_images(tmp_path, recursive=False)[-1].endswith('b.JPG')
    assert list_images(tmp_path / 'notes.txt') == [str(tmp_path / 'notes.txt')]
    with pytest.raises(FileNotFoundError, match='missing'):
        list_images(tmp_path / 'missing')


def test_writable():
    assert load_image(_rgb()).flags.writeable


def test_8bit_files_go_through_mmcv_and_16bit_through_mmsam(tmp_path, monkeypatch):
    import mmcv

    calls = []
    decode = mmcv.imfrombytes

    def spy(*args, **kwargs):
        calls.append(kwargs.get('backend'))
        return decode(*args, **kwargs)

    monkeypatch.setattr(mmcv, 'imfrombytes', spy)
    rgb = _rgb()
    Image.fromarray(rgb).convert('CMYK').save(tmp_path / 'c.jpg', quality=100)
    expected = np.asarray(Image.open(tmp_path / 'c.jpg').convert('RGB'))
    np.testing.assert_array_equal(load_image(tmp_path / 'c.jpg'), expected)
    assert calls == ['pillow']
    Image.fromarray(np.full((2, 3), 65535, np.uint16)).save(tmp_path / 'd.png')
    assert (load_image(tmp_path / 'd.png') == 255).all() and calls == ['pillow']
