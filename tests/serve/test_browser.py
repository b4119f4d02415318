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
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from serve_fixtures import build_tiny_sam, rgb_of, write_images

from mmsam.apis import SAMPredictor
from mmsam.testing import sam_model_cfg

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
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    if not chromium or not driver:
        _missing("Debian's chromium + chromium-driver")
    from mmsam.serve import ort_missing

    if ort_missing():
        _missing('onnxruntime-web (npm ci in mmsam/serve/static)')
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _start_server(folder: Path, model_files, port: int, *extra) -> subprocess.Popen:
    config, weights = model_files
    cmd = [
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
        *extra,
    ]
    log = open(folder.parent / f'server-{port}.log', 'w')
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'mmsam serve exited: {(folder.parent / log.name).read_text()}')
        try:
            with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/config', timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError('mmsam serve did not answer within 180 s')


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """The page's URL, its image folder and the model, with the server running."""
    chromium, driver_path = _browser_tools()
    tmp = tmp_path_factory.mktemp('serve_browser')
    model = build_tiny_sam()
    weights = tmp / 'tiny.pth'
    torch.save(model.state_dict(), weights)
    config = tmp / 'tiny.py'
    model_cfg = sam_model_cfg('tiny', img_size=256, window_size=4)
    config.write_text(f"default_scope = 'mmdet'\nmodel = {model_cfg!r}\n")
    folder = tmp / 'images'
    write_images(folder)
    port = _free_port()
    # float32 embeddings: the browser and SAMPredictor then differ by the runtime alone
    proc = _start_server(
        folder, (config, weights), port, '--embedding-dtype', 'float32', '--max-request-mb', '1'
    )
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
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope='module')
def browser(served):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = served['chromium']
    for arg in (
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--window-size=1200,800',
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(served['driver']), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        error = driver.execute_script('return window.mmsam && window.mmsam.error')
        assert not error, f'the page reported: {error}'
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f'timed out waiting for: {script}')


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, 'return window.mmsam && window.mmsam.ready')


def click_image(driver, x: float, y: float, right: bool = False) -> None:
    """Click the image pixel (x, y) of the shown image (through the prompt layer)."""
    from selenium.webdriver.common.action_chains import ActionChains

    layer = driver.find_element('id', 'prompt-layer')
    rect = driver.execute_script('return arguments[0].getBoundingClientRect().toJSON()', layer)
    h, w = driver.execute_script('return window.mmsam.size')
    dx = (x + 0.5) * rect['width'] / w - rect['width'] / 2
    dy = (y + 0.5) * rect['height'] / h - rect['height'] / 2
    chain = ActionChains(driver).move_to_element_with_offset(layer, int(dx), int(dy))
    (chain.context_click() if right else chain.click()).perform()


def decodes(driver) -> int:
    return driver.execute_script('return window.mmsam.timings.length')


def mask_layer_bits(driver) -> np.ndarray:
    """Pixels of the mask canvas that are painted (alpha > 0), as an (H, W) bool array."""
    text = driver.execute_script(
        """const c = document.getElementById('mask-layer');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = ''; for (let i = 3; i < d.length; i += 4) s += d[i] > 0 ? '1' : '0';
        return [c.height, c.width, s];"""
    )
    h, w, bits = text
    return (np.frombuffer(bits.encode(), np.uint8) == ord('1')).reshape(h, w)


def sam_mask(served, name, points, labels, candidate):
    predictor = SAMPredictor(served['model'])
    predictor.set_image(rgb_of(served['folder'], name))
    masks, _, _ = predictor.predict(np.array(points, float), np.array(labels))
    return masks[candidate]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_click_accept_export_in_the_browser(served, browser):
    from pycocotools.coco import COCO

    open_page(browser, served['url'] + '/#a.png')
    state = browser.execute_script('return [mmsam.backend, mmsam.name, mmsam.size]')
    assert state == ['browser', 'a.png', [120, 160]]
    click_image(browser, 50, 40)
    wait_for(browser, 'return window.mmsam.timings.length >= 1')
    prompt = browser.execute_script('return window.mmsam.prompt')
    assert [p[2] for p in prompt['points']] == [1] and prompt['box'] is None
    points = [p[:2] for p in prompt['points']]
    assert abs(points[0][0] - 50.5) <= 1 and abs(points[0][1] - 40.5) <= 1
    candidate = browser.execute_script('return window.mmsam.candidate')
    shown = mask_layer_bits(browser)  # nothing accepted yet: the preview alone
    expected = sam_mask(served, 'a.png', points, [1], candidate)
    assert shown.any() and iou(shown, expected) > IOU_MIN

    click_image(browser, 120, 90, right=True)  # a negative point
    wait_for(browser, 'return window.mmsam.timings.length >= 2')
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
    click_image(browser, 30, 100)
    wait_for(browser, 'return window.mmsam.timings.length >= 3')
    pending = browser.execute_script('return window.mmsam.prompt')
    open_page(browser, served['url'] + '/#a.png')
    assert browser.execute_script('return window.mmsam.annotations.length') == 1
    assert browser.execute_script('return window.mmsam.prompt') == pending


def test_server_fallback_and_refusals(served, browser):
    open_page(browser, served['url'] + '/?backend=server#sub/b.jpg')
    assert browser.execute_script('return [mmsam.backend, mmsam.name]') == ['server', 'sub/b.jpg']
    click_image(browser, 30, 40)
    wait_for(browser, 'return window.mmsam.timings.length >= 1')
    assert browser.execute_script('return window.mmsam.timings[0].backend') == 'server'
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
