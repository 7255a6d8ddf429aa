"""`make slides`: a short deck per executed notebook, code hidden, figures kept."""

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_slides.py"
CHROMIUM = Path("/usr/bin/chromium")


def _png() -> str:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(code="secret_training_code()"):
    return new_code_cell(
        code,
        outputs=[
            new_output("stream", name="stderr", text="training: 100%|####| 6/6 [00:10<00:00]"),
            new_output("stream", name="stdout", text="a printed table of numbers"),
            new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"}),
        ],
    )


def _executed_notebook(tagged: bool = False):
    cells = [
        new_markdown_cell("# 1 · Title\n\nWhat you will do, in a long paragraph."),
        new_markdown_cell("## Parameters"),
        new_code_cell(
            "profile = 'ci'", outputs=[new_output("display_data", data={"image/png": _png()})]
        ),
        new_markdown_cell("## 1 · A section"),
        new_markdown_cell("Plain narrative that is not a heading."),
        _figure(),
        _figure("second_figure()"),
        new_markdown_cell("## Questionnaire\n1. Why?"),
        _figure("figure_in_the_questionnaire()"),
    ]
    if tagged:
        cells[4].metadata["tags"] = ["slide"]
        cells[6].metadata["tags"] = ["no-slide"]
    return new_notebook(cells=cells)


def _build(tmp_path, tagged=False, notebook=None):
    executed = tmp_path / "executed"
    executed.mkdir()
    nbformat.write(notebook or _executed_notebook(tagged), executed / "01_demo.ipynb")
    result = subprocess.run(
        [sys.executable, str(TOOL), str(executed), str(tmp_path / "slides")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return (tmp_path / "slides" / "01_demo.slides.html").read_text()


def test_a_deck_is_a_title_then_one_figure_per_slide_under_its_section(tmp_path):
    html = _build(tmp_path)
    # title slide + one slide per figure of the numbered section; parameters and
    # questionnaire are no talk
    assert len(re.findall(r"<section>\s*<section>", html)) == 3  # a slide: a section in a section
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', html)) == 2
    assert "Title" in html and "What you will do" not in html  # a title that fits
    assert html.count("1 · A section") >= 2  # each figure under its section's title
    for hidden in (
        "secret_training_code",
        "training: 100",
        "a printed table",
        "Plain narrative",
        "Why?",
    ):
        assert hidden not in html, f"a slide shows {hidden!r}"


def test_tags_add_a_message_or_leave_a_figure_out(tmp_path):
    html = _build(tmp_path, tagged=True)
    assert "Plain narrative" in html  # tagged slide
    assert (
        len(re.findall(r'<img[^>]*src="data:image/png;base64,', html)) == 1
    )  # the other figure is tagged no-slide


def test_a_notebook_without_figures_is_refused_by_name(tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    nbformat.write(
        new_notebook(cells=[new_markdown_cell("# Only a title")]), executed / "01_x.ipynb"
    )
    result = subprocess.run(
        [sys.executable, str(TOOL), str(executed), str(tmp_path / "slides")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "01_x.ipynb: no figure to put on a slide" in result.stderr


def test_a_deck_links_nothing_outside_its_folder(tmp_path):
    html = _build(tmp_path)
    links = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert links and all(not link.startswith(("http:", "https:", "//")) for link in links), links
    for link in links:
        if not link.startswith("data:"):
            assert (tmp_path / "slides" / link.split("?")[0]).is_file(), link


@pytest.mark.browser
def test_a_deck_renders_as_slides_in_chromium_without_network(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    _build(tmp_path)
    deck = (tmp_path / "slides" / "01_demo.slides.html").resolve()
    outside, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()

            def only_files(route):  # the room has no network
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_files)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(deck.as_uri())
            page.wait_for_selector(".reveal.ready", state="attached", timeout=30_000)
            slides = page.evaluate("document.querySelectorAll('.reveal .slides > section').length")
            present = page.evaluate("document.querySelectorAll('.slides > section.present').length")
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(500)
            moved = page.evaluate("location.hash")
        finally:
            browser.close()
    assert slides == 3 and present == 1  # reveal laid it out as slides, one shown at a time
    assert moved.startswith("#/1"), moved
    assert outside == [] and errors == []


def test_missing_course_names_the_command_to_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TOOL), str(tmp_path / "none"), str(tmp_path / "slides")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "make course" in result.stderr


def test_a_non_utf8_notebook_is_an_error_naming_the_file(tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    path = executed / "01_demo.ipynb"
    latin1 = nbformat.writes(_executed_notebook(tagged=False)).encode("latin-1")  # · is 0xb7
    path.write_bytes(latin1)
    line = latin1[: latin1.index(b"\xb7")].count(b"\n") + 1
    result = subprocess.run(
        [sys.executable, str(TOOL), str(executed), str(tmp_path / "slides")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"make slides: {path}, line {line}: not UTF-8 (byte 0xb7)" in result.stderr
    assert "Traceback" not in result.stderr
