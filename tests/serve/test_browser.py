"""``mmsam serve`` in a real headless browser (Debian's chromium driven by selenium).

The server runs as ``mmsam serve`` in a subprocess on a free 127.0.0.1 port with a tiny
random SAM (config + checkpoint files); the page decodes with onnxruntime-web. Masks on
the page's canvas and in the exported COCO file are compared with ``SAMPredictor`` on the
same prompts and weights: onnxruntime-web (WebAssembly, float32) and torch round
differently, so pixels whose logit lies within float rounding of the threshold may
differ; the masks must agree to IoU > 0.99 (they are usually identical).

Skips when chromium, chromedriver, selenium or onnxruntime-web (tools/setup_web.sh) is
missing, and fails instead under CI (``CI=true``), where tools/setup_web.sh installs them.
"""

import http.client
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from serve_fixtures import rgb_of, write_images, write_model_files

from mmsam.apis import SAMPredictor
from mmsam.serve.browser import (
    click_and_wait,
    drag_box,
    find_browser,
    free_port,
    headless_chrome,
    mask_layer_bits,
    open_page,
    start_server,
    stop_server,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
IOU_MIN = 0.99


def _missing(what: str):
    if os.environ.get('CI', '').lower() in ('true', '1'):
        pytest.fail(f'{what} is missing under CI: run bash tools/setup_web.sh in the set-up')
    pytest.skip(f'{what} is missing (bash tools/setup_web.sh installs it)')


def _browser_tools():
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing('selenium (requirements/tests.txt)')
    found = find_browser()
    if found is None:
        _missing("Debian's chromium + chromium-driver")
    from mmsam.serve import ort_missing

    if ort_missing():
        _missing('onnxruntime-web (npm ci in mmsam/serve/static)')
    return found


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """The page's URL, its image folder and the model, with the server running."""
    chromium, driver_path = _browser_tools()
    tmp = tmp_path_factory.mktemp('serve_browser')
    model, config, weights = write_model_files(tmp)
    folder = tmp / 'images'
    write_images(folder)
    port = free_port()
    # float32 embeddings: the browser and SAMPredictor then differ by the runtime alone
    command = [
        sys.executable,
        '-m',
        'mmsam.cli',
        'serve',
        str(folder),
        '--model',
        str(config),
        '--weights',
        str(weights),
        '--device',
        'cpu',
        '--port',
        str(port),
        '--embedding-dtype',
        'float32',
        '--max-request-mb',
        '1',
    ]
    proc = start_server(command, port, str(tmp / 'server.log'), cwd=REPO)
    try:
        yield dict(
            url=f'http://127.0.0.1:{port}',
            port=port,
            folder=folder,
            model=model,
            chromium=chromium,
            driver=driver_path,
        )
    finally:
        stop_server(proc)


@pytest.fixture(scope='module')
def browser(served):
    driver = headless_chrome(served['chromium'], served['driver'])
    try:
        yield driver
    finally:
        driver.quit()


def sam_mask(served, name, points, labels, candidate, box=None):
    predictor = SAMPredictor(served['model'])
    predictor.set_image(rgb_of(served['folder'], name))
    coords = np.array(points, float) if points else None
    labels = np.array(labels) if points else None
    masks, _, _ = predictor.predict(coords, labels, None if box is None else np.array(box))
    return masks[candidate]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_click_accept_export_in_the_browser(served, browser):
    from pycocotools.coco import COCO

    open_page(browser, served['url'] + '/#a.png')
    state = browser.execute_script('return [mmsam.backend, mmsam.name, mmsam.size]')
    assert state == ['browser', 'a.png', [120, 160]]
    click_and_wait(browser, 50, 40)
    prompt = browser.execute_script('return window.mmsam.prompt')
    assert [p[2] for p in prompt['points']] == [1] and prompt['box'] is None
    points = [p[:2] for p in prompt['points']]
    assert abs(points[0][0] - 50.5) <= 1 and abs(points[0][1] - 40.5) <= 1
    candidate = browser.execute_script('return window.mmsam.candidate')
    shown = mask_layer_bits(browser)  # nothing accepted yet: the preview alone
    expected = sam_mask(served, 'a.png', points, [1], candidate)
    assert shown.any() and iou(shown, expected) > IOU_MIN

    click_and_wait(browser, 120, 90, right=True)  # a negative point
    prompt = browser.execute_script('return window.mmsam.prompt')
    assert [p[2] for p in prompt['points']] == [1, 0]
    browser.find_element('id', 'label').clear()
    browser.find_element('id', 'label').send_keys('blob')
    candidate = browser.execute_script('return window.mmsam.candidate')
    browser.find_element('id', 'accept').click()
    wait_for(browser, 'return window.mmsam.annotations.length === 1')
    browser.find_element('id', 'export-coco').click()
    wait_for(browser, 'return window.mmsam.lastExport')

    coco = COCO(str(served['folder'] / '.mmsam' / 'exports' / 'coco.json'))
    image = [i for i in coco.loadImgs(coco.getImgIds()) if i['file_name'] == 'a.png'][0]
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
    assert coco.loadCats(ann['category_id'])[0]['name'] == 'blob'
    exported = coco.annToMask(ann).astype(bool)
    points = [p[:2] for p in prompt['points']]
    expected = sam_mask(served, 'a.png', points, [1, 0], candidate)
    assert iou(exported, expected) > IOU_MIN
    saved = json.loads((served['folder'] / '.mmsam' / 'annotations' / 'a.png.json').read_text())
    assert saved['annotations'][0]['prompt'] == {'points': points, 'labels': [1, 0], 'box': None}

    # a reload restores the saved masks and the pending prompt
    click_and_wait(browser, 30, 100)
    pending = browser.execute_script('return window.mmsam.prompt')
    open_page(browser, served['url'] + '/#a.png')
    assert browser.execute_script('return window.mmsam.annotations.length') == 1
    assert browser.execute_script('return window.mmsam.prompt') == pending


def test_box_candidates_delete_undo_and_keys(served, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_page(browser, served['url'] + '/#sub/b.jpg')
    assert browser.execute_script('return [mmsam.backend, mmsam.name]') == ['browser', 'sub/b.jpg']
    browser.find_element('tag name', 'body').send_keys(Keys.ESCAPE)  # no pending prompt
    drag_box(browser, 10, 15, 55, 70)
    prompt = browser.execute_script('return window.mmsam.prompt')
    assert prompt['points'] == [] and abs(prompt['box'][0] - 10.5) <= 1.5
    assert abs(prompt['box'][3] - 70.5) <= 1.5
    first = browser.execute_script('return window.mmsam.candidate')
    expected = sam_mask(served, 'sub/b.jpg', [], [], first, prompt['box'])
    assert iou(mask_layer_bits(browser), expected) > IOU_MIN

    def keys(*sequence):
        ActionChains(browser).send_keys(*sequence).perform()

    keys('c')  # the next multimask candidate
    second = browser.execute_script('return window.mmsam.candidate')
    assert second == (first + 1) % 3
    expected = sam_mask(served, 'sub/b.jpg', [], [], second, prompt['box'])
    assert iou(mask_layer_bits(browser), expected) > IOU_MIN
    keys(Keys.ENTER)
    wait_for(browser, 'return window.mmsam.annotations.length === 1')
    assert browser.execute_script('return window.mmsam.annotations[0].candidate') == second
    keys(Keys.DELETE)
    wait_for(browser, 'return window.mmsam.annotations.length === 0')
    chord = ActionChains(browser).key_down(Keys.CONTROL).send_keys('z').key_up(Keys.CONTROL)
    chord.perform()  # undo the delete: saved again
    wait_for(browser, 'return window.mmsam.annotations.length === 1')
    saved = served['folder'] / '.mmsam' / 'annotations' / 'sub' / 'b.jpg.json'
    assert len(json.loads(saved.read_text())['annotations']) == 1
    keys(Keys.DELETE)  # leave the image without masks for the next test
    wait_for(browser, 'return window.mmsam.annotations.length === 0')
    keys(Keys.ARROW_LEFT)  # the previous image
    wait_for(browser, "return window.mmsam.ready && window.mmsam.name === 'a.png'")


def test_server_fallback_and_refusals(served, browser):
    open_page(browser, served['url'] + '/?backend=server#sub/b.jpg')
    assert browser.execute_script('return [mmsam.backend, mmsam.name]') == ['server', 'sub/b.jpg']
    assert click_and_wait(browser, 30, 40)['backend'] == 'server'
    prompt = browser.execute_script('return window.mmsam.prompt')
    candidate = browser.execute_script('return window.mmsam.candidate')
    expected = sam_mask(served, 'sub/b.jpg', [p[:2] for p in prompt['points']], [1], candidate)
    np.testing.assert_array_equal(mask_layer_bits(browser), expected)  # torch on both sides

    # path traversal over real HTTP (http.client sends the path as written)
    secret = served['folder'].parent / 'tiny.pth'
    for path in (
        '/api/file/../tiny.pth',
        '/api/file/..%2ftiny.pth',
        '/api/file/%2e%2e/tiny.pth',
        '/static/../../../../etc/passwd',
        '/api/exports/../../tiny.py',
    ):
        conn = http.client.HTTPConnection('127.0.0.1', served['port'], timeout=10)
        conn.request('GET', path)
        reply = conn.getresponse()
        body = reply.read()
        conn.close()
        assert reply.status in (400, 404), (path, reply.status)
        assert secret.read_bytes()[:64] not in body
    # an upload above --max-request-mb 1 is refused before it is stored
    conn = http.client.HTTPConnection('127.0.0.1', served['port'], timeout=30)
    conn.request('POST', '/api/upload?filename=big.png', body=b'\0' * (2 * 1024 * 1024))
    reply = conn.getresponse()
    reply.read()
    conn.close()
    assert reply.status == 413
    assert not (served['folder'] / 'uploads').exists()


def _put_annotations(served, name: str, body: dict):
    """Another client (tab, window, script) saves an image's annotations: (status, JSON)."""
    conn = http.client.HTTPConnection('127.0.0.1', served['port'], timeout=30)
    headers = {'Content-Type': 'application/json'}
    conn.request('PUT', f'/api/annotations/{name}', body=json.dumps(body), headers=headers)
    reply = conn.getresponse()
    data = json.loads(reply.read())
    conn.close()
    return reply.status, data


def test_a_save_after_another_tab_saved_is_refused_and_kept(served, browser):
    from selenium.webdriver.common.keys import Keys

    saved_file = served['folder'] / '.mmsam' / 'annotations' / 'a.png.json'
    open_page(browser, served['url'] + '/#a.png')
    revision, count = browser.execute_script('return [mmsam.revision, mmsam.annotations.length]')
    assert browser.find_element('id', 'conflict').is_displayed() is False
    # another tab removes every mask of the image
    status, doc = _put_annotations(served, 'a.png', {'annotations': [], 'revision': revision})
    assert status == 200 and doc['revision'] == revision + 1

    click_and_wait(browser, 60, 50)
    browser.find_element('id', 'accept').click()  # based on the old revision: refused
    wait_for(browser, 'return window.mmsam.conflict !== null')
    banner = browser.find_element('id', 'conflict')
    assert banner.is_displayed()
    assert 'this image was changed in another tab/window; reload to see it' in banner.text
    # the page keeps the masks it had and the new one, unsaved; the file is the other tab's
    assert browser.execute_script('return mmsam.annotations.length') == count + 1
    assert json.loads(saved_file.read_text())['annotations'] == []

    browser.find_element('id', 'conflict-keep').click()  # save these over the other version
    wait_for(browser, 'return window.mmsam.conflict === null')
    assert not banner.is_displayed()
    saved = json.loads(saved_file.read_text())
    assert len(saved['annotations']) == count + 1 and saved['revision'] == revision + 2
    assert browser.execute_script('return mmsam.revision') == revision + 2

    # again, and this time the page reloads the other tab's version
    status, _ = _put_annotations(served, 'a.png', {'annotations': [], 'revision': revision + 2})
    assert status == 200
    browser.find_element('tag name', 'body').send_keys(Keys.DELETE)
    wait_for(browser, 'return window.mmsam.conflict !== null')
    browser.find_element('id', 'conflict-reload').click()
    wait_for(browser, 'return window.mmsam.conflict === null && window.mmsam.ready')
    assert browser.execute_script('return [mmsam.revision, mmsam.annotations.length]') == [
        revision + 3,
        0,
    ]
    assert not banner.is_displayed()
