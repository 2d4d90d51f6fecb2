"""The run report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``; ``.ci/run`` installs them) loads every page over HTTP, every image
decodes, every relative link answers 200, the console has no errors, and the screenshots
are not blank. Skipped only outside CI when Chromium is not installed."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_report import report_run  # noqa: F401  (the fixture: a stored run with its report)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# options that work headless as root in a container
CHROMIUM_OPTIONS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1800")

pytestmark = pytest.mark.slow


def _require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{', '.join(missing)} missing in CI: .ci/run should have installed the "
                    "Debian packages chromium and chromium-driver")
    pytest.skip(f"{', '.join(missing)} not installed (apt-get install chromium "
                "chromium-driver); this test runs in CI")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(report_run: tuple[Path, str]) -> Iterator[str]:  # noqa: F811
    """The run's report folder over http://127.0.0.1 on a free port: its base URL."""
    store, run_id = report_run
    folder = store / "results" / "reports" / run_id
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _check_page(driver: object, url: str, screenshot: Path) -> list[str]:
    """Load ``url``; assert images, console and screenshot; return its relative links."""
    driver.get(url)  # type: ignore[attr-defined]
    images = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
    assert images, f"{url}: no images"
    broken = [alt for alt, complete, width in images if not (complete and width > 0)]
    assert not broken, f"{url}: images that did not load: {broken}"
    hrefs = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('a[href]'))"
        ".map(a => a.getAttribute('href'));")
    severe = [e for e in driver.get_log("browser")  # type: ignore[attr-defined]
              if e.get("level") == "SEVERE"]
    assert not severe, f"{url}: console errors {severe}"
    assert driver.save_screenshot(str(screenshot))  # type: ignore[attr-defined]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(screenshot))
    assert pixels.ndim == 3 and float(np.std(pixels[..., :3])) > 0.02, f"{url}: blank page"
    return [h for h in hrefs if not urllib.parse.urlparse(h).scheme and not h.startswith("#")]


def test_report_loads_in_chromium(served: str, tmp_path: Path) -> None:
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for option in CHROMIUM_OPTIONS:
        options.add_argument(option)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    started = time.perf_counter()
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        links = _check_page(driver, served + "index.html", tmp_path / "index.png")
        assert links, "the run page links to no patient page"
        for i, link in enumerate(links):
            target = urllib.parse.urljoin(served, link)
            with urllib.request.urlopen(target, timeout=10) as response:
                assert response.status == 200, target
            back = _check_page(driver, target, tmp_path / f"patient{i}.png")
            assert back == ["index.html"]
    finally:
        driver.quit()
    print(f"browser checks of {len(links) + 1} pages: {time.perf_counter() - started:.1f} s")
