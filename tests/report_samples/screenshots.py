"""Photograph the sample reports for the README (needs chromium):
`python tests/report_samples/screenshots.py`.

The pictures live here, beside the samples they show, rather than in a docs/ folder at the top.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from browser import screenshot  # noqa: E402
from report_samples.samples import drift_page, training_page  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, page in (("drift-report", drift_page()), ("training-report", training_page())):
            html = Path(tmp) / f"{name}.html"
            html.write_text(page)
            screenshot(html, HERE / f"{name}.png", width=1100, height=1300)
            print(HERE / f"{name}.png")


if __name__ == "__main__":
    main()
