"""Drive the page in a headless browser: the server in a subprocess, Chromium via selenium.

Used by the browser test (tests/serve/test_browser.py), the latency benchmark
(tools/analysis_tools/serve_benchmark.py) and the README's screenshot. The browser is
Debian's ``chromium`` with its ``chromedriver`` (``apt-get install chromium
chromium-driver``, done by tools/setup_web.sh); selenium is a test requirement.
"""

import shutil
import socket
import subprocess
import time
import urllib.request
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

HEADLESS_ARGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage')


def find_browser() -> Optional[Tuple[str, str]]:
    """``(chromium, chromedriver)`` paths, or ``None`` when either is missing."""
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    return (chromium, driver) if chromium and driver else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_server(
    command: Sequence[str], port: int, log_path: str, timeout: float = 180.0, cwd=None
) -> subprocess.Popen:
    """Start ``mmsam serve`` (``command``) and wait until it answers on ``port``.

    Raises:
        RuntimeError: it exited (its log is in the message) or did not answer in time.
    """
    log = open(log_path, 'w')
    proc = subprocess.Popen(list(command), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.close()
                with open(log_path, encoding='utf-8') as f:
                    raise RuntimeError(f'mmsam serve exited ({proc.returncode}): {f.read()}')
            try:
                with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/config', timeout=2):
                    return proc
            except OSError:
                time.sleep(0.3)
    except BaseException:
        stop_server(proc)
        raise
    stop_server(proc)
    raise RuntimeError(f'mmsam serve did not answer within {timeout:.0f} s (log: {log_path})')


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`start_server` (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def headless_chrome(chromium: str, driver: str, size: Tuple[int, int] = (1200, 800)):
    """A selenium Chrome driver of Debian's headless Chromium, ``size`` = (width, height)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in HEADLESS_ARGS + (f'--window-size={size[0]},{size[1]}',):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_for(driver, script: str, timeout: float = 60.0) -> Any:
    """Poll ``script`` (JavaScript returning a value) until it is truthy.

    Raises:
        AssertionError: the page reported an error, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        error = driver.execute_script('return window.mmsam && window.mmsam.error')
        if error:
            raise AssertionError(f'the page reported: {error}')
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout:.0f} s waiting for: {script}')


def open_page(driver, url: str, timeout: float = 120.0) -> None:
    """Load the page and wait until its image, embedding and masks are ready."""
    driver.get(url)
    wait_for(driver, 'return window.mmsam && window.mmsam.ready', timeout)


def _offset(driver, layer, x: float, y: float) -> Tuple[int, int]:
    """Offset from the prompt layer's centre of the centre of image pixel ``(x, y)``."""
    rect = driver.execute_script('return arguments[0].getBoundingClientRect().toJSON()', layer)
    h, w = driver.execute_script('return window.mmsam.size')
    dx = (x + 0.5) * rect['width'] / w - rect['width'] / 2
    dy = (y + 0.5) * rect['height'] / h - rect['height'] / 2
    return int(dx), int(dy)


def click_image(driver, x: float, y: float, right: bool = False) -> None:
    """Click the centre of image pixel ``(x, y)`` on the page (right button: negative)."""
    from selenium.webdriver.common.action_chains import ActionChains

    layer = driver.find_element('id', 'prompt-layer')
    chain = ActionChains(driver).move_to_element_with_offset(layer, *_offset(driver, layer, x, y))
    (chain.context_click() if right else chain.click()).perform()


def drag_box(driver, x0: float, y0: float, x1: float, y1: float, timeout: float = 60.0):
    """Drag a box from image pixel ``(x0, y0)`` to ``(x1, y1)``; wait for its mask."""
    from selenium.webdriver.common.action_chains import ActionChains

    before = driver.execute_script('return window.mmsam.timings.length')
    layer = driver.find_element('id', 'prompt-layer')
    start, end = _offset(driver, layer, x0, y0), _offset(driver, layer, x1, y1)
    chain = ActionChains(driver).move_to_element_with_offset(layer, *start).click_and_hold()
    chain.move_by_offset((end[0] - start[0]) // 2, (end[1] - start[1]) // 2)
    chain.move_to_element_with_offset(layer, *end).release().perform()
    wait_for(driver, f'return window.mmsam.timings.length > {before}', timeout)


def click_and_wait(driver, x: float, y: float, right: bool = False, timeout: float = 60.0):
    """:func:`click_image`, then wait for the mask; the page's timing of that decode."""
    before = driver.execute_script('return window.mmsam.timings.length')
    click_image(driver, x, y, right)
    wait_for(driver, f'return window.mmsam.timings.length > {before}', timeout)
    return driver.execute_script('return window.mmsam.timings[window.mmsam.timings.length - 1]')


def mask_layer_bits(driver) -> np.ndarray:
    """The painted pixels (alpha > 0) of the page's mask canvas, ``(H, W)`` bool."""
    h, w, bits = driver.execute_script(
        """const c = document.getElementById('mask-layer');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const out = new Array(c.width * c.height);
        for (let i = 0; i < out.length; i++) out[i] = d[4 * i + 3] > 0 ? '1' : '0';
        return [c.height, c.width, out.join('')];"""
    )
    return (np.frombuffer(bits.encode(), np.uint8) == ord('1')).reshape(h, w)


def timings(driver) -> List[dict]:
    """The page's decode timings: ``backend``, ``ms`` (prompt to mask drawn), ``decodeMs``."""
    return driver.execute_script('return window.mmsam.timings')
