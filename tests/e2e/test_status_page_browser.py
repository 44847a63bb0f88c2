"""The status page in a real headless browser (Debian chromium driven by Selenium).

The node state is made through the real APIs (``tests/status_samples.py``): a series
received, processed by the Gaussian denoiser, written as a derived series and delivered, and
one dead letter. The browser must render the table, the dead letter and both MIP images (the
images are checked as decoded by the browser: natural width above zero).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from status_samples import PopulatedNode, populate
from support import free_port

from service.config import load_settings
from service.ops.web import WebServer, start_web

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium not installed (apt-get install chromium chromium-driver)",
)
WAIT_S = 20.0


@pytest.fixture
def node(tmp_path: Path, tiny_study_dir: Path) -> Iterator[tuple[WebServer, PopulatedNode]]:
    settings = load_settings(
        listener={
            "bind_address": "127.0.0.1",
            "port": free_port(),
            "allowed_calling_aets": ["SCANNER1", "SCANNER2"],
        },
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 1024**2},
        queue={"broker_url": f"redis://127.0.0.1:{free_port()}/0", "embedded_redis": False},
        web={"bind_address": "127.0.0.1", "port": 0},
    )
    populated = populate(settings, tiny_study_dir)
    server = start_web(settings)
    yield server, populated
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1200",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _image_loaded(driver: webdriver.Chrome, element_id: str) -> bool:
    script = "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth;"
    return bool(driver.execute_script(script, element_id))


def test_page_shows_processed_series_and_thumbnails(
    node: tuple[WebServer, PopulatedNode], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    server, populated = node
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: _image_loaded(d, "mip-before") and _image_loaded(d, "mip-after"))

    assert browser.title == "UniPET node UNIPET"
    rows = browser.find_elements(By.CSS_SELECTOR, "#series tbody tr")
    texts = [row.text for row in rows]
    assert any(populated.done_series_uid in t and "DONE" in t for t in texts)
    dead = browser.find_element(By.ID, "dead-letters").text
    assert populated.dead_series_uid in dead
    assert "<script>alert('x')</script>" in dead  # shown as text, never run
    facts = browser.find_element(By.ID, "last-processed").text
    assert populated.output_series_uid in facts
    for element_id in ("mip-before", "mip-after"):
        image = browser.find_element(By.ID, element_id)
        assert image.size["height"] == 320
        assert image.size["width"] > 50

    screenshot = tmp_path / "status_page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
