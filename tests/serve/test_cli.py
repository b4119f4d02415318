"""``mmsam serve`` on the command line (uvicorn replaced by a recorder) and its stores."""

import numpy as np
import pytest
import torch
from serve_fixtures import build_tiny_sam, make_app, rgb_of, write_model_files

from mmsam.apis import SAMPredictor
from mmsam.apis.embedding_store import EmbeddingStoreError


@pytest.fixture
def model_files(tmp_path):
    _, config, weights = write_model_files(tmp_path)
    return ['--model', str(config), '--weights', str(weights), '--device', 'cpu']


@pytest.fixture
def served_apps(monkeypatch):
    """What ``uvicorn.run`` was called with, instead of serving."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, 'run', lambda app, **kw: calls.append(dict(kw, app=app)))
    return calls


def test_serve_binds_to_loopback_and_guards_the_host(
    image_folder, model_files, served_apps, capsys
):
    from starlette.testclient import TestClient

    from mmsam.cli import main

    assert main(['serve', str(image_folder), *model_files]) == 0
    (call,) = served_apps
    assert (call['host'], call['port']) == ('127.0.0.1', 8000)
    out, err = capsys.readouterr()
    assert 'http://127.0.0.1:8000/' in out and '2 images' in out
    assert 'WARNING' not in err
    with TestClient(call['app'], base_url='http://127.0.0.1:8000') as client:
        assert client.get('/api/images').status_code == 200
    with TestClient(call['app'], base_url='http://attacker.example') as client:
        assert client.get('/api/images').status_code == 400  # DNS rebinding guard
    assert (image_folder / '.mmsam').is_dir()


def test_serve_on_all_interfaces_warns(image_folder, model_files, served_apps, capsys):
    from starlette.testclient import TestClient

    from mmsam.cli import main

    code = main(['serve', str(image_folder), *model_files, '--host', '0.0.0.0', '--port', '9001'])
    assert code == 0
    err = capsys.readouterr().err
    assert 'WARNING: --host 0.0.0.0' in err and 'no log-in' in err
    (call,) = served_apps
    assert (call['host'], call['port']) == ('0.0.0.0', 9001)
    with TestClient(call['app'], base_url='http://192.0.2.7:9001') as client:
        assert client.get('/api/images').status_code == 200


def test_serve_errors(tmp_path, model_files, served_apps, capsys):
    from mmsam.cli import main

    assert main(['serve', str(tmp_path / 'missing'), *model_files]) == 1
    assert 'image folder not found' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: before anything is loaded
        main(['serve', str(tmp_path), '--port', '70000', *model_files])
    assert exit_info.value.code == 2
    assert 'expected [1, 65535], got 70000' in capsys.readouterr().err
    assert served_apps == []


def test_a_store_written_by_mmsam_embed_is_reused(tiny_sam, image_folder, tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from mmsam.cli.embed import embed_folder
    from mmsam.serve import AnnotationStore, ImageFolder, ServeModel, create_app

    store = tmp_path / 'store'
    embed_folder(tiny_sam, str(image_folder), str(store), 'tiny', dtype='float32')
    expected = (store / 'embeddings' / 'a.png.safetensors').read_bytes()

    def no_encoder(*args, **kwargs):
        raise AssertionError('the encoder ran although the store holds the embedding')

    monkeypatch.setattr(tiny_sam, 'extract_feat', no_encoder)
    work = str(image_folder / '.mmsam')
    engine = ServeModel(tiny_sam, 'tiny', work, store=str(store))  # float16 by default...
    assert engine.dtype == 'float32'  # ...but a store keeps its own dtype
    app = create_app(ImageFolder(str(image_folder), work), engine, AnnotationStore(work))
    with TestClient(app) as client:
        got = np.frombuffer(client.get('/api/embedding/a.png').content, '<f4')
    predictor = SAMPredictor(build_tiny_sam())  # the same weights, its own encoder
    predictor.set_image(rgb_of(image_folder, 'a.png'))
    np.testing.assert_allclose(got, predictor.get_image_embedding().numpy().ravel(), atol=1e-5)
    assert (store / 'embeddings' / 'a.png.safetensors').read_bytes() == expected

    other = build_tiny_sam()
    with torch.no_grad():
        next(other.backbone.parameters()).add_(1.0)
    with pytest.raises(EmbeddingStoreError, match='not of this model'):
        ServeModel(other, 'other', work, store=str(store))


def test_an_edited_image_is_encoded_again(tiny_sam, image_folder):
    import os

    from PIL import Image
    from starlette.testclient import TestClient

    from mmsam.testing import smooth_image

    app, _ = make_app(tiny_sam, image_folder)
    with TestClient(app) as client:
        before = client.get('/api/embedding/a.png').content
    Image.fromarray(smooth_image(120, 160, seed=9)).save(image_folder / 'a.png')
    stat = os.stat(image_folder / 'a.png')
    os.utime(image_folder / 'a.png', ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    app, _ = make_app(tiny_sam, image_folder)
    with TestClient(app) as client:
        after = np.frombuffer(client.get('/api/embedding/a.png').content, '<f4')
    predictor = SAMPredictor(tiny_sam)
    predictor.set_image(rgb_of(image_folder, 'a.png'))
    assert after.tobytes() != before
    np.testing.assert_allclose(after, predictor.get_image_embedding().numpy().ravel(), atol=1e-5)
