"""The headless Chromium the report's browser tests and its benchmark both drive."""

from __future__ import annotations

from typing import Any

#: Chromium flags: headless, no sandbox (root in CI), a fixed window.
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000")


def chrome_options(binary: str | None = None) -> Any:
    """selenium ChromeOptions with :data:`CHROME_ARGS` (and the browser binary, when given)."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    if binary is not None:
        options.binary_location = binary
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    return options
