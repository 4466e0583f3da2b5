"""``autosep web`` in a real headless browser (Debian's ``chromium`` + ``chromium-driver`` through Selenium):
what a visitor sees. One test, two tabs: a bad upload's error in the first tab, still there after the second
tab has run the three steps (progress in words while separating, a source named with ``$$``, players,
spectrograms, downloads: the files behind them the ones the app wrote) and replaced its recording (every old
result gone). A screenshot of the finished page is kept as a test artifact (``$AUTOSEP_TEST_ARTIFACTS``, default
``test-artifacts/`` in the checkout).

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
ERROR_KEPT_S = 15  # an error must still be on the page this long after it happened


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


@pytest.fixture(scope="module")
def web_config(tiny_audioldm2_dir, tiny_cnn14_checkpoint):
    """Enough diffusion steps and windows that a separation lasts long enough to watch its progress."""
    from autosep.pipeline import PipelineOptions
    from autosep.web.engine import WebConfig

    options = PipelineOptions(model=str(tiny_audioldm2_dir), tagger_model=str(tiny_cnn14_checkpoint), steps=40,
                              window=2.56, device="cpu", planner={"threshold": 0.0, "max_sources": 1})
    return WebConfig(options, max_duration_s=20.0, max_upload_mb=5.0)


@pytest.mark.slow  # two tabs, a separation watched step by step, and an error kept 15 s: about 40 s
def test_a_visitor_s_session_in_a_real_browser(server, browser, make_mix, tmp_path):
    (artifacts() / "web-failure.png").unlink(missing_ok=True)  # from an earlier failed run
    try:
        two_tabs(server, browser, make_mix, tmp_path)
    except BaseException:
        browser.save_screenshot(str(artifacts() / "web-failure.png"))  # the page as it was when it failed
        raise


def text_of(browser, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id).text


def upload(browser, wait, path: Path) -> None:
    from selenium.webdriver.common.by import By

    field = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
    field.send_keys(str(path))


def two_tabs(server, browser, make_mix, tmp_path):
    import time

    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.05)
    (tmp_path / "notes.wav").write_text("not audio at all")
    browser.get(server.url)
    upload(browser, wait, tmp_path / "notes.wav")
    wait.until(lambda d: "error:" in text_of(d, "upload-status"))
    failed_at, first_tab = time.monotonic(), browser.current_window_handle
    error = text_of(browser, "upload-status")
    assert error.startswith("error: notes.wav: not a readable audio or video file. Convert it") and "Errno" not in error

    browser.switch_to.new_window("tab")
    browser.get(server.url)
    three_steps(browser, wait, make_mix, tmp_path)
    replace_the_recording(browser, wait, make_mix, tmp_path)

    browser.switch_to.window(first_tab)  # the error is where it was, however long ago it happened
    time.sleep(max(0.0, failed_at + ERROR_KEPT_S - time.monotonic()))
    assert text_of(browser, "upload-status") == error


def three_steps(browser, wait, make_mix, tmp_path):
    from selenium.webdriver.common.by import By

    mix = make_mix(tmp_path / "garden.wav", seconds=6.0)
    find = wait.until(lambda d: d.find_element(By.ID, "find"))
    assert not find.is_enabled()  # nothing to find in yet
    upload(browser, wait, tmp_path / "garden.wav")
    wait.until(lambda d: "garden.wav" in text_of(d, "upload-status"))
    wait.until(lambda d: d.find_element(By.ID, "find").is_enabled())
    assert not browser.find_element(By.ID, "separate").is_enabled()

    # Step 1: the planned sources appear in the editable list; add one of our own, named with $$.
    browser.find_element(By.ID, "find").click()
    wait.until(lambda d: "source(s) found" in text_of(d, "find-status"))
    browser.find_element(By.CSS_SELECTOR, "#own-prompt textarea, #own-prompt input").send_keys("cash register $$")
    browser.find_element(By.ID, "add").click()
    wait.until(lambda d: "cash register $$" in text_of(d, "sources"))

    # Step 2: progress in words while it runs, the button off; then a player and a spectrogram per stem.
    browser.find_element(By.ID, "separate").click()
    seen, disabled = [], []
    while "stems" not in text_of(browser, "separate-status"):
        text = text_of(browser, "separate-status")
        if "window" in text and text not in seen:
            seen.append(text)
        disabled.append(not browser.find_element(By.ID, "separate").is_enabled())
    assert len(seen) >= 2, seen  # the text changed while it ran ("window 1 of 3, step 12 of 80", ...)
    assert any("step" in text for text in seen) and any(disabled)
    count = int(text_of(browser, "separate-status").split()[0])
    assert count == 3  # the found source, ours and the residual
    assert "cash register $$" in browser.find_element(By.ID, "stem-1").text  # drawn literally, not as math

    def stem_links(d):
        links = [a.get_attribute("href") for i in range(count)
                 for a in d.find_elements(By.CSS_SELECTOR, f"#stem-{i} a[href*='.wav']")]
        return links if len(links) == count else False

    links = wait.until(stem_links)
    assert any("cash_register.wav" in link for link in links) and any("residual.wav" in link for link in links)
    # The files behind the players are the stems: the input's length and channels, adding up to the input.
    stems = {link.rsplit("/", 1)[-1]: decoded(fetch(link)) for link in links}
    assert all(stem.shape == mix.shape for stem in stems.values())
    np.testing.assert_allclose(sum(stems.values()), mix, rtol=0, atol=1e-9)
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

    # Step 3: the remix player, named after the input.
    wait.until(lambda d: d.find_element(By.ID, "remix").is_enabled())
    browser.find_element(By.ID, "remix").click()
    wait.until(lambda d: "Remix" in text_of(d, "remix-status"))
    remix = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#remix-player a[href*='garden_remix.wav']"))
    np.testing.assert_allclose(decoded(fetch(remix[0].get_attribute("href"))), mix, rtol=0, atol=1e-9)  # all at 0 dB
    screenshot(browser)


def screenshot(browser) -> None:
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(max(int(height) + 200, 1600), 4000))  # the whole page in one picture
    shot = artifacts() / "web-three-steps.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    browser.set_window_size(1280, 1600)


def shown(browser, element_id: str) -> bool:
    from selenium.webdriver.common.by import By

    return any(e.is_displayed() for e in browser.find_elements(By.ID, element_id))  # hidden ones may be gone


def replace_the_recording(browser, wait, make_mix, tmp_path):
    """A new upload: nothing of the old recording stays on screen, and only step 1 can run."""
    from selenium.webdriver.common.by import By

    make_mix(tmp_path / "kitchen.wav")
    browser.find_element(By.CSS_SELECTOR, "#upload button[aria-label*='Clear'], #upload .label-clear-button").click()
    upload(browser, wait, tmp_path / "kitchen.wav")
    wait.until(lambda d: "kitchen.wav" in text_of(d, "upload-status"))
    wait.until(lambda d: not shown(d, "stem-0"))
    assert text_of(browser, "find-status") == "" and text_of(browser, "separate-status") == ""
    assert "cash register" not in text_of(browser, "sources")
    assert not browser.find_elements(By.CSS_SELECTOR, "#archive a[href*='.zip']")
    assert not shown(browser, "remix-player") and not shown(browser, "gain-0") and not shown(browser, "mel-0")
    buttons = [browser.find_element(By.ID, name).is_enabled() for name in ("find", "separate", "remix")]
    assert buttons == [True, False, False]
