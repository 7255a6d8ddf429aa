"""Build the course website from the executed notebooks, README and the docs pages.

    python tools/make_site.py build/course build/site              # for students
    python tools/make_site.py build/course build/site --answers    # for instructors

The notebooks are the executed copies of ``make course``, rendered by Sphinx and myst-nb as
they ran (nothing is executed again), with README as the home page and docs/method.md and
docs/architecture.md beside them. Every notebook page opens with launch links, made by
``agkit.course.stamp``: Colab and Binder for the notebook and for its student version, and the
student notebook to download.

Without ``--answers`` the site is the one to give students: the exercises show the blanks
of the student version (``agkit.course.student.strip_solutions``, the check cells without their
outputs), the questionnaires keep their questions but not their answers, and the answer key,
docs/answers.md, is not on it. ``--answers`` shows the solutions and adds the key.

The sources are staged into a temporary folder mirroring the repository (``index.md`` is
README), so the relative links of README and the docs resolve as they do on GitHub; a link
to a file the site does not hold (``data/README.md``) points at the file on GitHub. The
configuration is docs/site/conf.py. Sphinx runs with ``-W``: a broken link fails the build.
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the agkit of this checkout, also without `pip install -e`

from agkit.course import stamp, student  # noqa: E402

CONFIG = ROOT / "docs" / "site"
PAGES = ["docs/method.md", "docs/architecture.md"]
ANSWER_KEY = "docs/answers.md"
WIDGET_SCREENSHOT = ROOT / "docs" / "widget.png"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MARK = ".agkit-site"  # in every folder this tool built, so that it may replace it
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg"}
LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")


def github_url(path: str) -> str:
    """The page of the repository file (or folder) ``path`` on GitHub at agkit.course.stamp.REF."""
    kind = "tree" if (ROOT / path).is_dir() else "blob"
    return f"https://github.com/{stamp.REPOSITORY}/{kind}/{stamp.REF}/{path}"


def rewrite_links(text: str, page: str, pages: set[str], assets: set[str]) -> str:
    """Point the relative links of the markdown ``text`` of page ``page`` (a repository path)
    at what the site holds: a page of ``pages`` stays a link, an image is added to ``assets``
    (copied next to the page), and any other repository file becomes its GitHub address."""

    def replace(match):
        label, target, title = match.groups()
        if re.match(r"[a-z][\w+.-]*:", target) or target.startswith("#"):
            return match.group(0)  # an address, or a section of this page
        path, _, fragment = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        if resolved in pages:
            return match.group(0)
        if (ROOT / resolved).is_file() and Path(resolved).suffix.lower() in IMAGES:
            assets.add(resolved)
            return match.group(0)
        if (ROOT / resolved).exists():
            url = github_url(resolved) + (f"#{fragment}" if fragment else "")
            return f"{label}({url}{title})"
        return match.group(0)  # a broken link: Sphinx names it

    return LINK.sub(replace, text)


def launch_bar(name: str, profile: str | None) -> str:
    """The raw HTML block of launch links that opens notebook ``name``'s page."""

    def button(kind, href, text):
        return f'<a class="agkit-launch-button {kind}" href="{html.escape(href)}">{text}</a>'

    solution, blank = f"notebooks/{name}", f"notebooks/student/{name}"

    def row(label, *buttons):
        label = f'<span class="agkit-launch-label">{label}</span>'
        return f'<div class="agkit-launch-row">{label}{"".join(buttons)}</div>'

    parts = [
        '<div class="agkit-launch">',
        row(
            "Solution version",
            button("colab", stamp.colab_url(solution), "Open in Colab"),
            button("binder", stamp.binder_url(solution), "Launch Binder"),
        ),
    ]
    if (ROOT / blank).is_file():
        parts.append(
            row(
                "Student version",
                button("colab", stamp.colab_url(blank), "Open in Colab"),
                button("binder", stamp.binder_url(blank), "Launch Binder"),
                button("download", f"student/{name}", "Download .ipynb"),
            )
        )
    note = ""
    if profile:
        what = (
            "a quick smoke run on tiny data, so its numbers mean nothing; the workshop "
            "profile gives the course's results"
            if profile == "ci"
            else "the numbers the course discusses"
        )
        note = f"Outputs from a run on the <code>{profile}</code> profile ({what})."
    if (ROOT / blank).is_file():
        note += " The student version is this notebook with the exercises blank."
    if note:
        parts.append(f'<p class="agkit-launch-note">{note.strip()}</p>')
    return "\n".join(parts + ["</div>"])


def widget_figure() -> dict:
    """An output that shows the annotation widget's screenshot in place of the live widget."""
    data = base64.b64encode(WIDGET_SCREENSHOT.read_bytes()).decode()
    figure = (
        '<figure class="agkit-widget">'
        f'<img src="data:image/png;base64,{data}" alt="the mask annotation widget">'
        "<figcaption>The annotation widget (a screenshot): it draws in a live notebook, "
        "open this one in Colab or Binder with the links at the top.</figcaption></figure>"
    )
    return nbformat.v4.new_output(
        "display_data", data={"text/html": figure, "text/plain": "MaskAnnotator"}
    )


def _tags(cell) -> set:
    return set(cell.metadata.get("tags", []))


def _scrub(output, replacements: list[tuple[str, str]]):
    """The output with machine paths (the runs folder, the checkout) written as short names."""
    for key in ("text",):
        if key in output:
            for old, new in replacements:
                output[key] = output[key].replace(old, new)
    for mime in ("text/plain", "text/html"):
        if mime in output.get("data", {}):
            for old, new in replacements:
                output["data"][mime] = output["data"][mime].replace(old, new)
    return output


def site_notebook(notebook, name: str, answers: bool, pages: set[str], assets: set[str]):
    """The copy of one executed notebook that goes on the site (a new NotebookNode).

    Drops papermill's injected-parameters cell (its profile goes into the launch note),
    swaps the Colab badges of the first cell for the launch links, folds the Colab install
    cell, shows the annotation widget's screenshot in place of the widget, and without
    ``answers`` blanks the exercises and drops the questionnaire's answers.
    """
    site = copy.deepcopy(notebook)
    parameters = site.metadata.get("papermill", {}).get("parameters", {})
    profile = parameters.get("profile")
    replacements = []
    if parameters.get("runs_dir"):
        replacements.append((str(parameters["runs_dir"]), "runs"))
    replacements.append((f"{ROOT}/", ""))
    cells = []
    for index, cell in enumerate(site.cells):
        kinds = _tags(cell)
        if "injected-parameters" in kinds or ("answers" in kinds and not answers):
            continue
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source, f"notebooks/{name}", pages, assets)
        if cell.cell_type == "code":
            if stamp._is_install_cell(cell):  # it does nothing outside Colab: folded away
                cell.metadata.setdefault("tags", []).append("hide-input")
            if "exercise" in kinds and answers:
                cell.metadata["tags"].append("solution")  # labelled so on the page
            elif "exercise" in kinds:
                cell.source = student.strip_solutions(cell.source, f"{name}, cell {index}")
            if not answers and kinds & {"exercise", "check"}:
                cell.outputs = []  # a check's ✓ belongs to the solution, not to the blank
            cell.outputs = [
                widget_figure() if WIDGET_VIEW in o.get("data", {}) else _scrub(o, replacements)
                for o in cell.outputs
            ]
        cells.append(cell)
    title, _, rest = cells[0].source.partition("\n")
    rest = "\n".join(line for line in rest.splitlines() if "colab-badge.svg" not in line)
    cells[0].source = f"{title}\n\n{launch_bar(name, profile)}\n\n{rest.strip()}\n"
    site.cells = cells
    site.metadata.pop("widgets", None)  # no widget state: the page loads no widget scripts
    return site


def index_page(notebooks: list[str], docs: list[str], pages: set[str], assets: set[str]) -> str:
    """README as the home page, with the site's table of contents (hidden: the sidebar)."""
    readme = rewrite_links(
        (ROOT / "README.md").read_text(encoding="utf-8"), "README.md", pages, assets
    )

    def toctree(caption, entries):
        lines = "\n".join(Path(e).with_suffix("").as_posix() for e in entries)
        return f"```{{toctree}}\n:hidden:\n:caption: {caption}\n\n{lines}\n```\n"

    return f"{readme.rstrip()}\n\n{toctree('Course', notebooks)}\n{toctree('Background', docs)}"


def _replaceable(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARK).exists():
        raise FileExistsError(
            f"{out} holds files that tools/make_site.py did not write; pass another output "
            "folder or empty this one."
        )


def build(executed: Path, out: Path, answers: bool = False) -> list[Path]:
    """Write the site into ``out`` (replacing a site built there before); returns the
    notebook pages written."""
    executed, out = Path(executed), Path(out)
    names = sorted(p.name for p in executed.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        raise FileNotFoundError(
            f"no executed notebooks in {executed}: run `make course` (or `make course "
            "PROFILE=ci`) first, then `make site`"
        )
    missing = sorted(
        p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if p.name not in names
    )
    if missing:
        print(
            f"not on the site, not executed in {executed}: {', '.join(missing)} (run "
            f"`python -m agkit.course.run_all --all --out {executed}` to add the extensions)"
        )
    _replaceable(out)
    notebooks = [f"notebooks/{n}" for n in names]
    docs = PAGES + ([ANSWER_KEY] if answers else [])
    pages = {"README.md", *notebooks, *docs}
    assets: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="agkit-site-") as tmp:
        source = Path(tmp) / "source"
        (source / "notebooks").mkdir(parents=True)
        (source / "docs").mkdir()
        for name in names:
            notebook = nbformat.read(executed / name, as_version=4)
            page = site_notebook(notebook, name, answers, pages, assets)
            nbformat.write(page, source / "notebooks" / name)
        for doc in docs:
            text = (ROOT / doc).read_text(encoding="utf-8")
            (source / doc).write_text(rewrite_links(text, doc, pages, assets), encoding="utf-8")
        (source / "index.md").write_text(index_page(notebooks, docs, pages, assets), "utf-8")
        for asset in assets:
            (source / asset).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / asset, source / asset)
        built = Path(tmp) / "html"
        command = [
            sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
            "-c", str(CONFIG), "-d", str(Path(tmp) / "doctrees"), str(source), str(built),
        ]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, env=_env(), check=False)
        if result.returncode:
            raise RuntimeError(
                f"Sphinx failed (exit {result.returncode}); the messages above name the page "
                "and line of each problem."
            )
        for name in names:
            blank = ROOT / "notebooks" / "student" / name
            if blank.is_file():
                (built / "notebooks" / "student").mkdir(exist_ok=True)
                shutil.copy2(blank, built / "notebooks" / "student" / name)
        (built / MARK).write_text("built by tools/make_site.py\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # a stale answers.html must not survive a build without --answers
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(built, out)
    return [out / "notebooks" / f"{Path(n).stem}.html" for n in names]


def _env() -> dict:
    """The environment for Sphinx: this checkout's agkit first (conf.py imports it)."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("executed", type=Path, help="the executed notebooks (build/course)")
    parser.add_argument("out", type=Path, help="the site's folder (build/site)")
    parser.add_argument(
        "--answers",
        action="store_true",
        help="for instructors: show the solutions and add the answer key (docs/answers.md)",
    )
    args = parser.parse_args(argv)
    try:
        pages = build(args.executed, args.out, answers=args.answers)
    except (FileNotFoundError, FileExistsError, RuntimeError) as error:
        print(f"make_site: {error}", file=sys.stderr)
        return 1
    which = "with the answer key" if args.answers else "for students (no answers)"
    print(f"{len(pages)} notebook pages {which}: open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
