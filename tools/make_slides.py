"""Build a short reveal.js deck per notebook from the executed course notebooks.

    python tools/make_slides.py build/course build/slides [--vendor tools/slides/node_modules]

A deck is a short talk: a title slide (the notebook's title alone), then one slide per
figure of every numbered section, headed by its section's title. Code, parameters, progress
bars and printed text are left out; a markdown cell tagged ``slide`` becomes a slide of its
own (a key message), and a cell tagged ``no-slide`` never appears. The figures are the
executed copy's, so the numbers on a slide are the ones the course measured.

The decks work in a room without network: reveal.js, require.js, jQuery and MathJax are
copied next to them (``<out>/vendor/``) from the npm packages that ``make slides``
installs into ``tools/slides/node_modules`` (pinned in ``tools/slides/package-lock.json``),
and the deck links nothing outside its folder.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

from nbconvert import SlidesExporter
from nbformat.v4 import new_code_cell, new_markdown_cell

from agkit.course.student import read_notebook  # its error names the file (not UTF-8, not JSON)

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "tools" / "slides" / "node_modules"
SLIDE_TAG, NO_SLIDE_TAG = "slide", "no-slide"
#: sections that are no talk: what the student does, not what the course shows
SKIPPED_SECTIONS = ("parameters", "questionnaire", "try this", "summary")

#: what each deck needs from the npm packages, relative to VENDOR (a folder: all of it)
VENDORED = (
    "reveal.js/dist",
    "reveal.js/plugin/notes",
    "requirejs/require.js",
    "jquery/dist/jquery.min.js",
    "mathjax/MathJax.js",
    "mathjax/config/TeX-AMS_CHTML-full.js",
    "mathjax/config/Safe.js",
    "mathjax/extensions",
    "mathjax/jax/input/TeX",
    "mathjax/jax/element",
    "mathjax/jax/output/CommonHTML",
    "mathjax/fonts/HTML-CSS/TeX/woff",
)
#: nbconvert's template imports mermaid as a module; the decks draw no diagram, so a local
#: stand-in keeps the browser from fetching it
MERMAID_STUB = "export default { initialize() {} };\n"
#: a title that fits, figures that fit under their heading
DECK_CSS = """<style>
.reveal h1 { font-size: 1.7em; line-height: 1.2; }
.reveal h2 { font-size: 1.15em; }
.reveal section img { max-height: 520px; max-width: 100%; margin: 0 auto; }
.reveal .jp-OutputArea-output, .reveal .jp-RenderedImage { text-align: center; }
</style>
"""


def _tags(cell) -> list:
    return cell.metadata.get("tags", [])


def _figures(cell) -> list:
    """The image outputs of a code cell, each stripped to its picture (no '<Figure ...>')."""
    if cell.cell_type != "code" or NO_SLIDE_TAG in _tags(cell):
        return []
    shown = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "image/png" in data:
            shown.append(
                {
                    "output_type": "display_data",
                    "data": {"image/png": data["image/png"]},
                    "metadata": output.get("metadata", {}),
                }
            )
    return shown


def _heading(cell, level: str) -> str | None:
    """The text of the first line of a markdown cell when it is a heading of ``level``."""
    if cell.cell_type != "markdown":
        return None
    first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
    return first[len(level) :].strip() if first.startswith(level) else None


def _slide(cells: list, first: bool = True) -> list:
    for k, cell in enumerate(cells):
        kind = "slide" if first and k == 0 else "-"
        cell.metadata["slideshow"] = {"slide_type": kind}
    return cells


def deck(notebook):
    """A copy of ``notebook`` reduced to its talk, with reveal.js slide metadata set."""
    cells = []
    title = next((t for c in notebook.cells if (t := _heading(c, "# ")) is not None), None)
    if title:
        cells += _slide([new_markdown_cell(f"# {title}")])
    section, skipped = None, False
    for cell in notebook.cells:
        if NO_SLIDE_TAG in _tags(cell):
            continue
        heading = _heading(cell, "## ")
        if heading is not None:
            section = heading
            skipped = heading.lower().startswith(SKIPPED_SECTIONS)
        if cell.cell_type == "markdown" and SLIDE_TAG in _tags(cell):
            cells += _slide([new_markdown_cell(cell.source)])
            continue
        if skipped:
            continue
        for figure in _figures(cell):
            picture = new_code_cell("", outputs=[figure])
            head = [new_markdown_cell(f"## {section}")] if section else []
            cells += _slide(head + [picture])
    if len(cells) < 2:
        raise ValueError(
            "no figure to put on a slide: a deck needs a titled notebook with figures under "
            "its '## ' sections, or markdown cells tagged 'slide'"
        )
    reduced = copy.deepcopy(notebook)
    reduced.metadata.pop("widgets", None)  # no widget manager from a CDN
    reduced.cells = cells
    return reduced


def vendor(out: Path, source: Path = VENDOR) -> Path:
    """Copy what the decks load into ``out/vendor``; returns that folder."""
    missing = [name for name in VENDORED if not (source / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"the slides' scripts are not installed ({source / missing[0]} is missing): run "
            "`make slides`, which installs them with npm from tools/slides/package-lock.json"
        )
    target = out / "vendor"
    for name in VENDORED:
        path, copy_to = source / name, target / name
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, copy_to, dirs_exist_ok=True)
        else:
            shutil.copy2(path, copy_to)
    (target / "mermaid-stub.mjs").write_text(MERMAID_STUB, encoding="utf-8")
    return target


def exporter() -> SlidesExporter:
    """nbconvert's slides exporter, pointed at the copies in ``vendor/``."""
    slides = SlidesExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    slides.reveal_url_prefix = "vendor/reveal.js"
    slides.reveal_theme = "white"  # its font ships with reveal.js; "simple" fetches Google's
    slides.require_js_url = "vendor/requirejs/require.js"
    slides.jquery_url = "vendor/jquery/dist/jquery.min.js"
    slides.mathjax_url = "vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    slides.mermaid_js_url = "./vendor/mermaid-stub.mjs"
    return slides


def build(executed: Path, out: Path, source: Path = VENDOR) -> list[Path]:
    """Write one ``<name>.slides.html`` per executed notebook in ``executed`` into ``out``."""
    notebooks = sorted(executed.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(
            f"no executed notebooks in {executed}: run `make course` (or "
            "`make course PROFILE=ci`) first, then `make slides`"
        )
    out.mkdir(parents=True, exist_ok=True)
    vendor(out, source)
    slides = exporter()
    written = []
    for path in notebooks:
        notebook = read_notebook(path)
        try:
            talk = deck(notebook)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        body, _ = slides.from_notebook_node(talk)
        target = out / f"{path.stem}.slides.html"
        target.write_text(body.replace("</head>", DECK_CSS + "</head>", 1), encoding="utf-8")
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("executed", type=Path, help="folder of executed notebooks")
    parser.add_argument("out", type=Path, help="folder for the decks")
    parser.add_argument(
        "--vendor", type=Path, default=VENDOR, help="the npm packages (tools/slides/node_modules)"
    )
    args = parser.parse_args(argv)
    try:
        for path in build(args.executed, args.out, args.vendor):
            print(path)
    except (FileNotFoundError, ValueError) as error:
        print(f"make slides: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
