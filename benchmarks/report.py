"""Size of `report.html` and its render time in headless Chromium.

usage: python benchmarks/report.py --out DIR --input FOLDER [--input FOLDER ...] [--repeats 3]

Runs `fmnist-cluster report` on the folders (wall time of the whole command), then opens the
page in Debian's headless Chromium (selenium + chromedriver, one fresh browser per load) and
reads, from the page itself, the milliseconds from navigation start until the explorer has
decoded its data and drawn every point (`data-ready-ms`). Anchor, measured in the same run:
the same page with the explorer taken out (its two scripts and its element), time from
navigation start to the end of the `load` event. Prints the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import chrome_options  # noqa: E402


def browser() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=chrome_options())


def load_ms(page: Path, explorer: bool) -> tuple[float, str | None]:
    """Milliseconds from navigation start to the explorer being drawn (or to the end of load)."""
    driver = browser()
    try:
        driver.get(page.resolve().as_uri())
        for _ in range(1200):
            if explorer:
                done = driver.execute_script("return document.getElementById('explorer').getAttribute('data-ready-ms')")
            else:
                done = driver.execute_script(
                    "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd || null"
                )
            if done:
                points = driver.execute_script(
                    "const e = document.getElementById('explorer'); return e && e.getAttribute('data-rendered-points')"
                )
                return float(done), points
            time.sleep(0.05)
        raise RuntimeError(f"{page} did not finish loading in 60 s")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    cmd = [sys.executable, "-m", "fmnist_cluster", "report", "--out", str(out)]
    for folder in args.input:
        cmd += ["--input", folder]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report_s = time.perf_counter() - start
    page = out / "report.html"
    text = page.read_text(encoding="utf-8")
    bare = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S).replace('<div id="explorer"></div>', "")
    anchor = out.parent / (out.name + "-without-explorer.html")
    anchor.write_text(bare, encoding="utf-8")
    full, base, points = [], [], None
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        ms, points = load_ms(page, True)
        full.append(ms)
        base.append(load_ms(anchor, False)[0])
    f, b = statistics.median(full), statistics.median(base)
    print(
        f"report command: {report_s:.1f} s; report.html {page.stat().st_size / 1e6:.2f} MB "
        f"({anchor.stat().st_size / 1e6:.2f} MB without the explorer); explorer drew {points} points"
    )
    print(
        f"explorer drawn after {f:.0f} ms (runs {', '.join(f'{v:.0f}' for v in full)}); "
        f"page without explorer loaded after {b:.0f} ms (runs {', '.join(f'{v:.0f}' for v in base)}); "
        f"ratio {f / b:.2f}"
    )


if __name__ == "__main__":
    main()
