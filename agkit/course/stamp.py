"""The Colab and Binder badges and the install cell of every notebook (``make stamp``).

``REPOSITORY`` and ``REF`` are the one place that names where the kit is installed from on
Colab and where the badges point; ``stamp`` writes them into every course notebook (and
student copy) and README.md:

    python -m agkit.course.stamp stamp [repository folder]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The one place that names where the kit is installed from on Colab and where the badges point.
REPOSITORY = "agkit-course/agkit"
REF = "main"

INSTALL_MARK = "google.colab"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_COLAB_LINK = re.compile(  # group 1: the file's path in the repository
    r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w./-]+?/"
    r"(notebooks/[\w./-]+?\.ipynb)"
)
_BINDER_LINK = re.compile(r"https://mybinder\.org/v2/gh/[\w.-]+/[\w.-]+/[\w./-]+?(?=[?)\s])")
_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
_GIT_REQUIREMENT = re.compile(
    r"agkit @ git\+https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?(?:@[\w./-]+)?(?=[\s\"'`]|$)"
)


def install_requirement() -> str:
    """The pip requirement that installs the kit alone (no extras) from REPOSITORY at REF."""
    return f"agkit @ git+https://github.com/{REPOSITORY}@{REF}"


def install_cell_source() -> str:
    """The source of every notebook's install cell; it runs only on Colab.

    No extras: Colab has its own front end and pins ipykernel, ipython, notebook, tornado,
    pandas and requests, which the kit's plain dependencies accept as they are.
    """
    return (
        "# On Colab, install agkit first (this cell does nothing anywhere else).\n"
        "import sys\n"
        "\n"
        f'if "{INSTALL_MARK}" in sys.modules:\n'
        f'    %pip install -q "{install_requirement()}"'
    )


def colab_url(path: str) -> str:
    """Colab's address for the repository file ``path`` (relative to the repository root)."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{REF}/{path}"


def binder_url(path: str | None = None) -> str:
    """mybinder.org's address for the repository at REF, opening ``path`` in JupyterLab."""
    url = f"https://mybinder.org/v2/gh/{REPOSITORY}/{REF}"
    return url + (f"?labpath={path}" if path else "")


def badge(path: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(path)})"


def stamp_text(text: str) -> str:
    """Point every Colab/Binder link and git requirement in ``text`` at REPOSITORY and REF."""
    text = _COLAB_LINK.sub(lambda m: colab_url(m.group(1)), text)
    text = _GIT_REQUIREMENT.sub(install_requirement(), text)
    return _BINDER_LINK.sub(binder_url(), text)


def _is_install_cell(cell: dict) -> bool:
    source = "".join(cell.get("source", ""))
    return cell.get("cell_type") == "code" and INSTALL_MARK in source and "pip install" in source


def required_badges(path, repo_root) -> list[str]:
    """Repository paths the first cell of notebook ``path`` must have Colab badges for.

    ``notebooks/X.ipynb`` and, where it exists, its student version
    ``notebooks/student/X.ipynb``; the same two for the student version itself.
    """
    name = Path(path).name
    paths = [f"notebooks/{name}"]
    if (Path(repo_root) / "notebooks" / "student" / name).is_file():
        paths.append(f"notebooks/student/{name}")
    return paths


def stamp_notebook(path, repo_root) -> bool:
    """Write REPOSITORY and REF into the notebook's badges and install cell; True if changed.

    Every Colab link keeps its path and gets REPOSITORY and REF. A badge that
    ``required_badges`` asks for and the first cell lacks is added (on the line of its last
    badge, or after the title line), an install cell is added after the first cell if there
    is none. Nothing else changes: the file is rewritten byte for byte as it was read.
    """
    original = Path(path).read_text(encoding="utf-8")
    notebook = json.loads(original)
    cells = notebook["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            _set_source(cell, stamp_text(_source(cell)))
    first = _source(cells[0])
    missing = [p for p in required_badges(path, repo_root) if f"{colab_url(p)})" not in first]
    if missing:
        added = " · ".join(
            badge(p) + (" **student version**" if "/student/" in p else "") for p in missing
        )
        badges = list(_BADGE.finditer(first))
        if badges:
            end = badges[-1].end()
            end += len(first[end:].split("\n", 1)[0])  # after the label that follows it
            first = f"{first[:end]} · {added}{first[end:]}"
        else:
            title, _, rest = first.partition("\n")
            first = f"{title}\n\n{added}\n" + (f"\n{rest.lstrip(chr(10))}" if rest else "")
        _set_source(cells[0], first)
    install = [cell for cell in cells if _is_install_cell(cell)]
    if install:
        _set_source(install[0], install_cell_source())
    else:
        cells.insert(
            1,
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": install_cell_source(),
            },
        )
    stamped = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if stamped == original:
        return False
    Path(path).write_text(stamped, encoding="utf-8")
    return True


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _set_source(cell: dict, text: str) -> None:
    """Store ``text`` as a list of lines, as Jupyter writes it (unchanged text stays as is)."""
    if _source(cell) != text:
        cell["source"] = text.splitlines(keepends=True)


def stamp(repo_root) -> list[Path]:
    """Stamp every course notebook (and student copy) and README.md; returns what changed."""
    root = Path(repo_root)
    changed = []
    notebooks = [
        *sorted(root.glob("notebooks/*.ipynb")),
        *sorted(root.glob("notebooks/student/*.ipynb")),
    ]
    for path in notebooks:
        if stamp_notebook(path, root):
            changed.append(path)
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if stamp_text(text) != text:
            readme.write_text(stamp_text(text), encoding="utf-8")
            changed.append(readme)
    return changed


if __name__ == "__main__":  # python -m agkit.course.stamp stamp [repo root]
    if sys.argv[1:2] != ["stamp"]:
        sys.exit("usage: python -m agkit.course.stamp stamp [repository folder]")
    for changed_path in stamp(sys.argv[2] if len(sys.argv) > 2 else "."):
        print("stamped", changed_path)
