"""`make slides`: a short deck per executed notebook, code hidden, figures kept."""

import base64
import io
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_slides.py"


def _png() -> str:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _executed_notebook(tagged: bool):
    figure = new_code_cell(
        "secret_training_code()",
        outputs=[new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"})],
    )
    cells = [
        new_markdown_cell("# 1 · Title\n\nWhat you will do."),
        new_code_cell("import agkit", outputs=[]),
        new_markdown_cell("## A section"),
        new_markdown_cell("Plain narrative that is not a heading."),
        figure,
    ]
    if tagged:
        cells[3].metadata["tags"] = ["slide"]
        figure.metadata["tags"] = ["slide"]
    return new_notebook(cells=cells)


def _build(tmp_path, tagged):
    executed = tmp_path / "executed"
    executed.mkdir()
    nbformat.write(_executed_notebook(tagged), executed / "01_demo.ipynb")
    result = subprocess.run(
        [sys.executable, str(TOOL), str(executed), str(tmp_path / "slides")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return (tmp_path / "slides" / "01_demo.slides.html").read_text()


def test_untagged_notebook_gives_headings_and_figures_without_code(tmp_path):
    html = _build(tmp_path, tagged=False)
    assert "data:image/png;base64," in html
    assert "A section" in html and "Title" in html
    assert "Plain narrative" not in html
    assert "secret_training_code" not in html, "slides must not show code"
    assert html.count("<section") >= 3


def test_tagged_cells_alone_make_the_deck(tmp_path):
    html = _build(tmp_path, tagged=True)
    assert "Plain narrative" in html and "data:image/png;base64," in html
    assert "A section" not in html


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
