"""The notebooks' widgets as a learner meets them: served by Voila, driven in headless Chromium.

nbval runs the widget cells but never renders them, so a widget that breaks against the installed
JupyterLab/ipywidgets front end would pass it. Here the notebook is served live (Voila executes it
in a kernel, fast mode), Debian's Chromium (packages chromium, chromium-driver; `.ci/run` installs
them, no browser download) drags a slider, and the test waits for the figure to change.
Screenshots go to pytest's tmp folder, or to DREAMCACHE_FIGURES when set (figures/ refresh).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# The flags that keep Chromium off this machine's closed network and out of a sandbox it cannot make.
# Voila's page links CDN files (Font Awesome, mermaid): every host but this one fails at once instead of
# leaving the page loading until a DNS or connect timeout (a flaky 120 s hang seen in a full test run).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,1600"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def serve(notebook: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    # MPLBACKEND=Agg as in CI (.ci/run): the notebook must still draw into its widgets (setup switches to inline)
    env = dict(os.environ, DREAMCACHE_FAST="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               DREAMCACHE_FIGURES=str(log.parent / "notebook-figures"), MPLBACKEND="Agg")
    server = subprocess.Popen([sys.executable, "-m", "voila", str(ROOT / "notebooks" / notebook), "--no-browser",
                               f"--port={port}", "--Voila.ip=127.0.0.1", "--show_tracebacks=True"],
                              env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return server, f"http://127.0.0.1:{port}/"


def open_page(driver, url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while True:
        if server.poll() is not None:
            pytest.fail(f"voila exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            driver.get(url)   # returns once Voila has executed the notebook and sent the page
            return
        except Exception as err:
            if time.time() > deadline:
                pytest.fail(f"no page from voila in {timeout:.0f} s ({type(err).__name__}); voila log (tail):\n"
                            f"{log.read_text()[-3000:]}")
            time.sleep(1)


def figure_hash(driver) -> str | None:
    """A digest of the picture inside the (last) widget Output area, None while there is none."""
    from selenium.webdriver.common.by import By

    images = driver.find_elements(By.CSS_SELECTOR, ".widget-output img")
    return hashlib.sha1(images[-1].get_attribute("src").encode()).hexdigest() if images else None


def slider(driver, label: str):
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.CSS_SELECTOR, ".widget-hslider"):
        if element.find_element(By.CSS_SELECTOR, ".widget-label").text == label:
            return element
    raise AssertionError(f"no slider labelled {label!r} on the page")


def drag(driver, element, pixels: int) -> None:
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By

    handle = element.find_element(By.CSS_SELECTOR, ".noUi-handle")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    ActionChains(driver).click_and_hold(handle).move_by_offset(pixels, 0).release().perform()


def keep_screenshot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("DREAMCACHE_FIGURES"):
        shutil.copy(tmp_path / name, Path(os.environ["DREAMCACHE_FIGURES"]) / name)


def wait_for(driver, condition, log: Path, what: str, timeout: float = 180):
    """WebDriverWait.until, but a timeout says what was awaited and shows the page's widget outputs and
    Voila's log (a kernel error, a figure drawn as text under a non-interactive backend, ...)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        outputs = [e.get_attribute("innerHTML")[:500] for e in driver.find_elements(By.CSS_SELECTOR, ".widget-output")]
        pytest.fail(f"waited {timeout:.0f} s for {what}; widget outputs on the page: {outputs}\n"
                    f"voila log (tail):\n{log.read_text()[-2000:]}")


def test_05_explorer_redraws_when_a_slider_moves(browser, tmp_path):
    from selenium.webdriver.common.by import By

    log = tmp_path / "voila.log"
    server, url = serve("05_feature_visualisation.ipynb", log)
    try:
        open_page(browser, url, server, log)
        wait_for(browser, figure_hash, log, "the explorer's first figure")
        before, query_x = figure_hash(browser), slider(browser, "query x")
        readout = query_x.find_element(By.CSS_SELECTOR, ".widget-readout")
        start = readout.text
        drag(browser, query_x, 40)
        wait_for(browser, lambda d: readout.text != start, log, "the slider's readout to change")
        wait_for(browser, lambda d: figure_hash(d) not in (None, before), log, "a new figure")
        keep_screenshot(browser, tmp_path, "05_explorer_browser.png")
    finally:
        server.terminate()
        server.wait(30)
