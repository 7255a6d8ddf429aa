"""Build a short reveal.js deck per notebook from the executed course notebooks.

    python tools/make_slides.py build/course build/slides

A deck holds the cells an author tagged ``slide`` (each starts a new slide) or, in a
notebook with no such tag, the title cell, every section heading and every figure. Code is
hidden: a slide shows the markdown or the figures a cell drew, taken from the executed copy,
so the numbers on a slide are the ones the course measured. The decks load reveal.js from a
CDN; for a room without network pass ``--reveal-prefix`` pointing at a local copy.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from nbconvert import SlidesExporter

from agkit.student import read_notebook  # its error names the file (not UTF-8, not JSON)

SLIDE_TAG = "slide"


def _has_figure(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def _is_heading(cell) -> bool:
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith(("# ", "## "))


def slide_cells(notebook) -> list:
    """The cells of ``notebook`` that go on slides, in order."""
    tagged = [c for c in notebook.cells if SLIDE_TAG in c.metadata.get("tags", [])]
    if tagged:
        return tagged
    return [c for c in notebook.cells if _is_heading(c) or _has_figure(c)]


def deck(notebook):
    """A copy of ``notebook`` reduced to its slides, with reveal.js slide metadata set."""
    chosen = [copy.deepcopy(c) for c in slide_cells(notebook)]
    if not chosen:
        raise ValueError("no cell to put on a slide: tag cells 'slide' or add headings")
    for cell in chosen:
        cell.metadata["slideshow"] = {"slide_type": "slide"}
        if cell.cell_type == "code":
            # Keep only what the cell showed: figures and short text, never tracebacks.
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"]
    reduced = copy.deepcopy(notebook)
    reduced.cells = chosen
    return reduced


def build(executed: Path, out: Path, reveal_prefix: str | None = None) -> list[Path]:
    """Write one ``<name>.slides.html`` per executed notebook in ``executed`` into ``out``."""
    notebooks = sorted(executed.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(
            f"no executed notebooks in {executed}: run `make course` (or "
            "`make course PROFILE=ci`) first, then `make slides`"
        )
    exporter = SlidesExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        body, _ = exporter.from_notebook_node(deck(read_notebook(path)))
        target = out / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("executed", type=Path, help="folder of executed notebooks")
    parser.add_argument("out", type=Path, help="folder for the decks")
    parser.add_argument("--reveal-prefix", help="where reveal.js is served from")
    args = parser.parse_args(argv)
    try:
        for path in build(args.executed, args.out, args.reveal_prefix):
            print(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"make slides: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
