"""Debian's headless chromium through selenium, one way for every browser test.

The flags are those this workplace's machines were checked with: without the
background-networking ones, chromium keeps opening connections that the closed network
refuses (and looks up Google's hosts at every start), which costs CI time and can stall
a page. A fresh profile folder per browser, so no state leaks between tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Debian's /usr/bin/chromium is a shell wrapper; chromedriver wants the binary.
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
                 if Path(p).exists()), None)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
         "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")


@contextmanager
def chrome(*extra: str, console_log: bool = False) -> Iterator[Any]:
    """A selenium driver of headless chromium with ``extra`` flags; quit on exit."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="raylake-chromium-")
    for arg in (*FLAGS, f"--user-data-dir={profile}", *extra):
        opts.add_argument(arg)
    if console_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
