"""``autosep web`` in a real headless browser (Debian's ``chromium`` + ``chromium-driver`` through Selenium):
load the page, upload a short recording, run the three steps, and check that the players, spectrograms and
downloads appear and that the files behind them are the ones the app wrote. A screenshot of the finished page is
kept as a test artifact (``$AUTOSEP_TEST_ARTIFACTS``, default ``test-artifacts/`` in the checkout).

Skipped, saying why, only where no browser is installed; ``.ci/run`` installs one, so CI runs it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

selenium = pytest.importorskip("selenium", reason='selenium is not installed (pip install -e ".[test,web]")')

CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver (apt-get install -y chromium "
           "chromium-driver), as .ci/run does",
)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, as root in a container (no sandbox), and no calls home (updates, sync, field trials).
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1600",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps", "--no-first-run", "--metrics-recording-only",
                 "--disable-features=OptimizationHints,MediaRouter,Translate"):
        options.add_argument(flag)
    # The driver named explicitly: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(TIMEOUT_S)
    yield driver
    driver.quit()


def artifacts() -> Path:
    folder = Path(os.environ.get("AUTOSEP_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def decoded(data: bytes):
    """The samples of an audio file the page links to, as float64 [frames, channels]."""
    import soundfile as sf

    return sf.read(io.BytesIO(data), dtype="float64", always_2d=True)[0]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow  # a real Chromium through three steps of the app: about 17 s on an idle 2-core machine
def test_three_steps_in_a_real_browser(server, browser, make_mix, tmp_path):
    (artifacts() / "web-failure.png").unlink(missing_ok=True)  # from an earlier failed run
    try:
        three_steps(server, browser, make_mix, tmp_path)
    except BaseException:
        browser.save_screenshot(str(artifacts() / "web-failure.png"))  # the page as it was when it failed
        raise


def three_steps(server, browser, make_mix, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT_S)
    mix = make_mix(tmp_path / "garden.wav")
    browser.get(server.url)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
    upload.send_keys(str(tmp_path / "garden.wav"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload [aria-label='garden.wav']"))  # uploaded

    # Step 1: the planned sources appear in the editable list; add one of our own.
    browser.find_element(By.ID, "find").click()
    wait.until(lambda d: "source(s) found" in d.find_element(By.ID, "find-status").text)
    assert "garden.wav" in browser.find_element(By.ID, "find-status").text
    browser.find_element(By.CSS_SELECTOR, "#own-prompt textarea, #own-prompt input").send_keys("dog barking")
    browser.find_element(By.ID, "add").click()
    wait.until(lambda d: "dog barking" in d.find_element(By.ID, "sources").text)

    # Step 2: a player and a spectrogram per stem, and the zip.
    browser.find_element(By.ID, "separate").click()
    wait.until(lambda d: "stems" in d.find_element(By.ID, "separate-status").text)
    count = int(browser.find_element(By.ID, "separate-status").text.split()[0])
    assert count >= 2  # at least the added source and the residual

    def stem_links(d):
        links = [a.get_attribute("href") for i in range(count)
                 for a in d.find_elements(By.CSS_SELECTOR, f"#stem-{i} a[href*='.wav']")]
        return links if len(links) == count else False

    links = wait.until(stem_links)
    assert any("dog_barking.wav" in link for link in links) and any("residual.wav" in link for link in links)
    # The files behind the players are the stems: the input's length and channels, adding up to the input.
    stems = {link.rsplit("/", 1)[-1]: decoded(fetch(link)) for link in links}
    assert all(stem.shape == mix.shape for stem in stems.values())
    np.testing.assert_allclose(sum(stems.values()), mix, rtol=0, atol=1e-9)
    assert all(browser.find_element(By.ID, f"stem-{i}").is_displayed() for i in range(count))
    unused = browser.find_elements(By.ID, f"stem-{count}")
    assert not unused or not unused[0].is_displayed()  # unused slots stay hidden
    pictures = wait.until(lambda d: [img.get_attribute("src") for i in range(count)
                                     for img in d.find_elements(By.CSS_SELECTOR, f"#mel-{i} img")] or False)
    assert len(pictures) == count and all(min(png_size(fetch(src))) >= 100 for src in pictures)  # real pictures
    archive = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#archive a[href*='.zip']"))
    with zipfile.ZipFile(io.BytesIO(fetch(archive[0].get_attribute("href")))) as bundle:  # the same stems + manifest
        names = {Path(name).name: name for name in bundle.namelist()}
        assert set(names) == set(stems) | {"manifest.json"}
        for name, stem in stems.items():
            np.testing.assert_array_equal(decoded(bundle.read(names[name])), stem)
        assert {s["file"] for s in json.loads(bundle.read(names["manifest.json"]))["sources"]} <= set(stems)

    # Step 3: the remix player and its download.
    browser.find_element(By.ID, "remix").click()
    wait.until(lambda d: "Remix" in d.find_element(By.ID, "remix-status").text)
    wait.until(lambda d: d.find_element(By.ID, "remix-player").is_displayed())
    remix = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#remix-file a[href*='remix']"))
    np.testing.assert_allclose(decoded(fetch(remix[0].get_attribute("href"))), mix, rtol=0, atol=1e-9)  # all at 0 dB

    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(max(int(height) + 200, 1600), 4000))  # the whole page in one picture
    shot = artifacts() / "web-three-steps.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
