"""The reports rendered by a real headless browser (Debian's chromium): what a person would see.

Skipped, with the reason, where chromium is not installed (apt-get install -y chromium).
"""

from __future__ import annotations

import pytest

from browser import chromium, dump_dom, read_png, screenshot
from report_samples.samples import drift_page, training_page

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install -y chromium)"),
]

RED = (207, 34, 46)  # current bars of a drifted feature
GREY = (140, 149, 159)  # reference bars
BLUE = (9, 105, 218)  # current bars of a feature that did not drift


def _count(image, colour):
    target = bytes(colour)
    return sum(row.count(target) for row in image.pixels)  # approximate: also counts unaligned matches


def test_the_drift_report_renders_with_its_verdict_and_histograms(tmp_path):
    page = tmp_path / "drift.html"
    page.write_text(drift_page())
    dom = dump_dom(page)
    assert "<title>Drift report: churn</title>" in dom
    assert "Drift confirmed: 2 of 4 features drifted" in dom
    assert dom.count('aria-label="tenure_months: reference against current"') == 1
    png = tmp_path / "drift.png"
    screenshot(page, png, width=1000, height=900)
    image = read_png(png)
    assert (image.width, image.height) == (1000, 900)
    colours = image.colours()
    assert RED in colours
    assert GREY in colours
    assert BLUE in colours
    assert _count(image, RED) > 500  # the drifted features' bars and banner, not a stray pixel


def test_the_training_report_renders_its_gate_and_confusion_matrix(tmp_path):
    page = tmp_path / "training.html"
    page.write_text(training_page())
    dom = dump_dom(page)
    assert "<title>Training report: churn-4</title>" in dom
    assert "Passes its gates: 2 of 2 checks" in dom
    assert 'aria-label="confusion matrix"' in dom
    png = tmp_path / "training.png"
    screenshot(page, png, width=1000, height=1000)
    image = read_png(png)
    assert len(image.colours()) > 50  # text, panels and charts, not a blank page
    assert (218, 251, 225) in image.colours()  # the green banner of a passed gate
