"""``mmsam serve``'s HTTP API in-process (Starlette's TestClient), against SAMPredictor."""

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image
from serve_fixtures import IMAGES, make_app, rgb_of

from mmsam.apis import SAMPredictor
from mmsam.apis.sa1b import decode_sa1b_masks, read_sa1b, sa1b_image_id
from mmsam.structures.rle import rle_to_mask

PROMPT = {'points': [[50.0, 40.0], [110.0, 80.0]], 'labels': [1, 0], 'box': None}
BOX_PROMPT = {'points': [[30.0, 30.0]], 'labels': [1], 'box': [10.0, 12.0, 60.0, 70.0]}


def predictor_masks(model, folder, name, prompt):
    """SAMPredictor's three masks and scores on the image file (its own encoder pass)."""
    predictor = SAMPredictor(model)
    predictor.set_image(rgb_of(folder, name))
    points = np.array(prompt['points'], dtype=np.float64).reshape(-1, 2)
    labels = np.array(prompt['labels'])
    box = None if prompt['box'] is None else np.array(prompt['box'])
    masks, scores, _ = predictor.predict(
        points if len(points) else None, labels if len(points) else None, box
    )
    return masks, scores


def accepted(decoded, candidate, label, prompt):
    """An annotation as the page sends it (uncompressed RLE of the chosen candidate)."""
    return {
        'label': label,
        'segmentation': decoded['masks'][candidate],
        'predicted_iou': decoded['scores'][candidate],
        'stability_score': decoded['stability_scores'][candidate],
        'prompt': prompt,
        'candidate': candidate,
        'source': 'click',
    }


def test_lists_images_and_serves_their_pixels(client, image_folder):
    listing = client.get('/api/images').json()['images']
    assert [i['name'] for i in listing] == sorted(IMAGES)
    for item in listing:
        h, w, _ = IMAGES[item['name']]
        assert (item['height'], item['width'], item['saved']) == (h, w, False)
        reply = client.get(f'/api/file/{item["name"]}')
        assert reply.status_code == 200
        shown = np.asarray(Image.open(io.BytesIO(reply.content)).convert('RGB'))
        np.testing.assert_array_equal(shown, rgb_of(image_folder, item['name']))
    config = client.get('/api/config').json()
    assert config['image_size'] == 256 and config['model'] == 'tiny'
    page = client.get('/')
    assert page.status_code == 200 and '<canvas' in page.text
    assert page.headers['cross-origin-opener-policy'] == 'same-origin'


def test_embedding_is_computed_once_and_stored(tiny_sam, image_folder, monkeypatch):
    from starlette.testclient import TestClient

    app, engine = make_app(tiny_sam, image_folder)
    with TestClient(app) as client:
        reply = client.get('/api/embedding/sub/b.jpg')
    assert reply.status_code == 200
    shape = tuple(int(s) for s in reply.headers['x-embedding-shape'].split(','))
    assert shape == (1, 256, 16, 16)
    assert reply.headers['x-original-size'] == '90,70'
    assert reply.headers['x-input-size'] == '256,199'
    got = np.frombuffer(reply.content, dtype='<f4').reshape(shape)
    predictor = SAMPredictor(tiny_sam)
    predictor.set_image(rgb_of(image_folder, 'sub/b.jpg'))
    np.testing.assert_allclose(got, predictor.get_image_embedding().numpy(), atol=1e-5)
    assert (image_folder / '.mmsam' / 'embeddings').is_dir()

    # a restarted server reads the store: the encoder is not run again
    def no_encoder(*args, **kwargs):
        raise AssertionError('the encoder ran although the embedding is stored')

    monkeypatch.setattr(tiny_sam, 'extract_feat', no_encoder)
    app, _ = make_app(tiny_sam, image_folder)
    with TestClient(app) as client:
        again = client.get('/api/embedding/sub/b.jpg')
    assert again.content == reply.content


@pytest.mark.parametrize('prompt', [PROMPT, BOX_PROMPT], ids=['points', 'box'])
def test_decode_fallback_equals_sam_predictor(client, tiny_sam, image_folder, prompt):
    reply = client.post('/api/decode/a.png', json=prompt)
    assert reply.status_code == 200, reply.text
    decoded = reply.json()
    masks, scores = predictor_masks(tiny_sam, image_folder, 'a.png', prompt)
    assert len(decoded['masks']) == 3
    for i in range(3):
        np.testing.assert_array_equal(rle_to_mask(decoded['masks'][i]), masks[i])
    np.testing.assert_allclose(decoded['scores'], scores, atol=1e-5)
    assert all(0.0 <= s <= 1.0 for s in decoded['stability_scores'])


def test_decode_refuses_bad_prompts(client):
    assert client.post('/api/decode/a.png', json={'points': []}).status_code == 400
    bad = {'points': [[1, 2]], 'labels': [7]}
    assert client.post('/api/decode/a.png', json=bad).status_code == 400
    assert client.post('/api/decode/a.png', content=b'{not json').status_code == 400


def test_annotations_survive_a_restart(client, tiny_sam, image_folder):
    from starlette.testclient import TestClient

    decoded = client.post('/api/decode/a.png', json=PROMPT).json()
    ann = accepted(decoded, 1, 'cat', PROMPT)
    saved = client.put('/api/annotations/a.png', json={'annotations': [ann]})
    assert saved.status_code == 200, saved.text
    doc = saved.json()
    assert [a['id'] for a in doc['annotations']] == [1]
    assert doc['annotations'][0]['label'] == 'cat'
    assert doc['annotations'][0]['point_coords'] == [[50.0, 40.0]]
    assert client.get('/api/images').json()['images'][0]['saved'] is True
    app, _ = make_app(tiny_sam, image_folder)
    with TestClient(app) as restarted:
        assert restarted.get('/api/annotations/a.png').json() == doc
    bad = dict(ann, segmentation={'size': [120, 160], 'counts': [5]})
    assert client.put('/api/annotations/a.png', json={'annotations': [bad]}).status_code == 400
    assert client.get('/api/annotations/a.png').json() == doc  # a refused write changes nothing


def test_concurrent_puts_leave_one_whole_file(client, image_folder):
    decoded = client.post('/api/decode/a.png', json=PROMPT).json()
    bodies = [
        {'annotations': [accepted(decoded, i % 3, f'label{i}', PROMPT)] * (1 + i % 4)}
        for i in range(12)
    ]
    codes = []

    def put(body):
        codes.append(client.put('/api/annotations/a.png', json=body).status_code)

    threads = [threading.Thread(target=put, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * len(bodies)
    path = image_folder / '.mmsam' / 'annotations' / 'a.png.json'
    doc = json.loads(path.read_text())  # whole JSON, not a mix of two writes
    labels = [a['label'] for a in doc['annotations']]
    assert len(set(labels)) == 1
    i = int(labels[0][len('label') :])
    assert len(labels) == 1 + i % 4
    leftovers = [p.name for p in path.parent.iterdir() if p.name != 'a.png.json']
    assert leftovers == []


def test_a_save_based_on_a_stale_revision_is_refused(client, image_folder):
    """Two tabs load revision 0; the first save wins, the second gets 409 and changes
    nothing; a save based on the revision now saved goes through."""
    decoded = client.post('/api/decode/a.png', json=PROMPT).json()
    first, second = (accepted(decoded, i, f'tab{i}', PROMPT) for i in (0, 1))
    assert client.get('/api/annotations/a.png').json()['revision'] == 0
    saved = client.put('/api/annotations/a.png', json={'annotations': [first], 'revision': 0})
    assert saved.status_code == 200, saved.text
    assert saved.json()['revision'] == 1
    path = image_folder / '.mmsam' / 'annotations' / 'a.png.json'
    on_disk = path.read_bytes()

    stale = client.put('/api/annotations/a.png', json={'annotations': [second], 'revision': 0})
    assert stale.status_code == 409
    body = stale.json()
    assert body['revision'] == 1
    assert 'a.png was changed in another tab or window' in body['error']
    assert 'reload' in body['error']
    assert path.read_bytes() == on_disk  # the refused save changed nothing

    fresh = {'annotations': [first, second], 'revision': 1}
    saved = client.put('/api/annotations/a.png', json=fresh)
    assert saved.status_code == 200, saved.text
    doc = client.get('/api/annotations/a.png').json()
    assert doc == saved.json() and doc['revision'] == 2
    assert [a['label'] for a in doc['annotations']] == ['tab0', 'tab1']

    # a save without a revision (a script) replaces whatever is saved
    saved = client.put('/api/annotations/a.png', json={'annotations': []})
    assert saved.status_code == 200 and saved.json()['revision'] == 3
    for bad in (-1, '3', 2.0, True):
        body = {'annotations': [], 'revision': bad}
        reply = client.put('/api/annotations/a.png', json=body)
        assert reply.status_code == 400 and 'revision' in reply.json()['error'], bad
    assert client.get('/api/annotations/a.png').json()['revision'] == 3


def test_a_file_from_before_revisions_reads_as_revision_1(client, image_folder):
    decoded = client.post('/api/decode/a.png', json=PROMPT).json()
    client.put('/api/annotations/a.png', json={'annotations': [accepted(decoded, 0, 'x', PROMPT)]})
    path = image_folder / '.mmsam' / 'annotations' / 'a.png.json'
    old = json.loads(path.read_text())
    del old['revision']
    path.write_text(json.dumps(old))
    assert client.get('/api/annotations/a.png').json()['revision'] == 1
    stale = client.put('/api/annotations/a.png', json={'annotations': [], 'revision': 0})
    assert stale.status_code == 409 and stale.json()['revision'] == 1
    saved = client.put('/api/annotations/a.png', json={'annotations': [], 'revision': 1})
    assert saved.status_code == 200 and saved.json()['revision'] == 2


def test_concurrent_saves_on_one_revision_one_wins_whole(client, image_folder):
    """Twelve saves based on the same revision at once: one is written, whole, the
    others are refused (409) and leave no partial file."""
    decoded = client.post('/api/decode/a.png', json=PROMPT).json()
    bodies = [
        {
            'annotations': [accepted(decoded, i % 3, f'label{i}', PROMPT)] * (1 + i % 4),
            'revision': 0,
        }
        for i in range(12)
    ]
    codes = {}

    def put(i):
        codes[i] = client.put('/api/annotations/a.png', json=bodies[i]).status_code

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes.values()) == [200] + [409] * (len(bodies) - 1)
    (winner,) = [i for i, code in codes.items() if code == 200]
    path = image_folder / '.mmsam' / 'annotations' / 'a.png.json'
    doc = json.loads(path.read_text())  # whole JSON: the winner's document
    assert doc['revision'] == 1
    assert [a['label'] for a in doc['annotations']] == [f'label{winner}'] * (1 + winner % 4)
    assert [p.name for p in path.parent.iterdir()] == ['a.png.json']


@pytest.mark.parametrize(
    'url',
    [
        '/api/file/../secret.png',
        '/api/file/%2e%2e/secret.png',
        '/api/file/..%2fsecret.png',
        '/api/file//etc/passwd',
        '/api/file/.mmsam/annotations/a.png.json',
        '/api/file/link/secret.png',
        '/api/embedding/../secret.png',
        '/api/annotations/..%2f..%2fsecret.png',
        '/api/exports/../../secret.png',
        '/api/file/notes.txt',
    ],
)
def test_path_traversal_is_refused(client, image_folder, url):
    secret = image_folder.parent / 'secret.png'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(secret)
    (image_folder / 'notes.txt').write_text('not an image')
    (image_folder / 'link').mkdir()
    (image_folder / 'link' / 'secret.png').symlink_to(secret)
    reply = client.get(url)
    assert reply.status_code in (400, 404), (url, reply.status_code)
    assert b'\x89PNG' not in reply.content
    names = [i['name'] for i in client.get('/api/images').json()['images']]
    assert 'link/secret.png' not in names


def test_uploads_are_checked(tiny_sam, image_folder):
    from starlette.testclient import TestClient

    from mmsam.serve import Limits

    app, _ = make_app(
        tiny_sam, image_folder, Limits(max_request_bytes=20_000, max_image_pixels=100 * 100)
    )
    good = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(good, format='PNG')
    huge = io.BytesIO()
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(huge, format='PNG')
    with TestClient(app) as client:
        reply = client.post('/api/upload?filename=new.png', content=good.getvalue())
        assert reply.status_code == 201 and reply.json()['name'] == 'uploads/new.png'
        again = client.post('/api/upload?filename=new.png', content=good.getvalue())
        assert again.json()['name'] == 'uploads/new_1.png'  # never replaces a file
        assert client.post('/api/upload?filename=x.png', content=b'no image').status_code == 415
        assert client.post('/api/upload?filename=x.txt', content=good.getvalue()).status_code == 415
        assert (
            client.post('/api/upload?filename=big.png', content=huge.getvalue()).status_code == 413
        )
        oversize = client.post('/api/upload?filename=o.png', content=b'\0' * 30_000)
        assert oversize.status_code == 413
        big_put = client.put('/api/annotations/a.png', content=b' ' * 30_000)
        assert big_put.status_code == 413
        names = [i['name'] for i in client.get('/api/images').json()['images']]
    assert names == sorted(list(IMAGES) + ['uploads/new.png', 'uploads/new_1.png'])
    assert sorted(p.name for p in (image_folder / 'uploads').iterdir()) == ['new.png', 'new_1.png']


@pytest.mark.parametrize('mask_format', ['rle', 'polygon'])
def test_coco_export_equals_sam_predictor(client, tiny_sam, image_folder, tmp_path, mask_format):
    from pycocotools.coco import COCO

    chosen = {'a.png': (PROMPT, 2, 'cat'), 'sub/b.jpg': (BOX_PROMPT, 0, 'dog')}
    for name, (prompt, candidate, label) in chosen.items():
        decoded = client.post(f'/api/decode/{name}', json=prompt).json()
        body = {'annotations': [accepted(decoded, candidate, label, prompt)]}
        assert client.put(f'/api/annotations/{name}', json=body).status_code == 200
    reply = client.post('/api/export', json={'format': 'coco', 'mask_format': mask_format})
    assert reply.json() == {'files': ['coco.json']}
    data = client.get('/api/exports/coco.json')
    path = tmp_path / 'coco.json'
    path.write_bytes(data.content)
    coco = COCO(str(path))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == ['cat', 'dog']
    for image in coco.loadImgs(coco.getImgIds()):
        prompt, candidate, label = chosen[image['file_name']]
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
        assert coco.loadCats(ann['category_id'])[0]['name'] == label
        assert isinstance(ann['segmentation'], list if mask_format == 'polygon' else dict)
        masks, _ = predictor_masks(tiny_sam, image_folder, image['file_name'], prompt)
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[candidate])
        assert ann['area'] == float(masks[candidate].sum())


def test_sa1b_export_and_amg(client, tiny_sam, image_folder):
    from mmsam.apis import AutomaticMaskGenerator

    proposals = client.post('/api/amg/a.png').json()['masks']
    generator = AutomaticMaskGenerator(
        tiny_sam,
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        output_mode='coco_rle',
    )
    expected = generator.generate(rgb_of(image_folder, 'a.png'))
    assert len(proposals) == len(expected) > 0
    assert [p['segmentation'] for p in proposals] == [r['segmentation'] for r in expected]
    anns = [dict(p, label='thing', source='amg') for p in proposals[:2]]
    assert client.put('/api/annotations/a.png', json={'annotations': anns}).status_code == 200
    files = client.post('/api/export', json={'format': 'sa1b'}).json()['files']
    assert files == ['sa1b/a.png.json', 'sa1b/sub/b.jpg.json']
    data = read_sa1b(str(image_folder / '.mmsam' / 'exports' / 'sa1b' / 'a.png.json'))
    assert data['image'] == {
        'image_id': sa1b_image_id('a.png'),
        'width': 160,
        'height': 120,
        'file_name': 'a.png',
    }
    from mmsam.structures.rle import coco_rle_to_mask

    got = decode_sa1b_masks(data)
    for mask, record in zip(got, expected[:2]):
        np.testing.assert_array_equal(mask, coco_rle_to_mask(record['segmentation']))
    assert [a['predicted_iou'] for a in data['annotations']] == pytest.approx(
        [r['predicted_iou'] for r in expected[:2]]
    )
    empty = read_sa1b(str(image_folder / '.mmsam' / 'exports' / 'sa1b' / 'sub' / 'b.jpg.json'))
    assert empty['annotations'] == []


def test_a_corrupt_annotation_file_is_reported_by_name(client, image_folder):
    path = image_folder / '.mmsam' / 'annotations' / 'a.png.json'
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "mmsam.serve.annotations", "ima')
    reply = client.get('/api/annotations/a.png')
    assert reply.status_code == 500
    assert 'a.png.json is not valid JSON' in reply.json()['error']
    assert (
        client.post('/api/decode/a.png', json={'points': [['x', 1]], 'labels': [1]}).status_code
        == 400
    )
    # a save cannot tell which revision the file holds: refused, the file kept
    reply = client.put('/api/annotations/a.png', json={'annotations': [], 'revision': 0})
    assert reply.status_code == 500 and 'a.png.json is not valid JSON' in reply.json()['error']
    assert path.read_text() == '{"format": "mmsam.serve.annotations", "ima'
