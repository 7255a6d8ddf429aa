"""Student versions of the course notebooks, made from the solution notebooks.

    python -m agkit.student            # (re)write notebooks/student/*.ipynb
    python -m agkit.student --check    # exit 1 when a student version is out of date

The solution notebooks in ``notebooks/`` are the one source: CI executes them. Their cells
are tagged for what they are in a lesson:

* ``exercise``: a coding exercise; its solution lines sit between ``# BEGIN SOLUTION`` and
  ``# END SOLUTION`` (the markers otter-grader uses too) and become a blank, ``...``, in
  the student version;
* ``exercise-intro``: the markdown that sets an exercise, kept as it is;
* ``check``: the instant check after an exercise (``exercises.check_*``), kept as it is;
* ``questionnaire`` and ``answers``: questions, and their answers, which the student
  version replaces with a cell for the student's own answers;
* ``experiment``: an open "try this" experiment; ``setup``, ``parameters``: as named.

The student notebooks live one folder deeper, so relative links in markdown (``](../``) get
one more ``../``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = NOTEBOOKS / "student"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
BLANK = "...  # your code here"
ANSWER_CELL = "**Your answers** (double-click to write):\n\n1. \n2. \n3. \n"
STUDENT_NOTE = (
    "\n\n> **Student version.** The coding exercises have blanks (`...`) for "
    "you to fill in; the cell after each one checks your code and says what "
    "is wrong, if anything. The solution version is the other badge."
)


class MarkerError(ValueError):
    """An exercise cell whose solution markers do not pair up."""


def tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def strip_solutions(source: str, where: str = "an exercise cell") -> str:
    """Replace every ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block by one blank line
    ``...  # your code here`` at the indentation of its BEGIN marker."""
    out, inside = [], False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise MarkerError(
                    f"{where}, line {number}: {BEGIN} inside another block; "
                    f"close the first with {END}."
                )
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + BLANK)
        elif stripped.startswith(END):
            if not inside:
                raise MarkerError(f"{where}, line {number}: {END} without {BEGIN}.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: {BEGIN} without {END}; add the closing marker.")
    return "\n".join(out)


def solution_lines(source: str) -> list[str]:
    """The code lines between the markers of an exercise cell (stripped, non-empty)."""
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip().startswith(BEGIN):
            inside = True
        elif line.strip().startswith(END):
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def student_version(notebook, name: str):
    """The student version of one solution notebook (a new NotebookNode)."""
    student = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(student.cells):
        kinds = tags(cell)
        if "exercise" in kinds:
            if BEGIN not in cell.source:
                raise MarkerError(
                    f"{name}, cell {index}: tagged 'exercise' but holds no {BEGIN} ... {END} block."
                )
            cell.source = strip_solutions(cell.source, f"{name}, cell {index}")
        elif BEGIN in cell.source:
            raise MarkerError(
                f"{name}, cell {index}: solution markers in a cell that is not "
                "tagged 'exercise'; tag it, or the solution would reach students."
            )
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("](../", "](../../")
        if "answers" in kinds:
            blank = nbformat.v4.new_markdown_cell(ANSWER_CELL, metadata={"tags": ["answers"]})
            if "id" in cell:
                blank["id"] = cell["id"]  # the same id every time: the output is reproducible
            cell = blank
        cells.append(cell)
    cells[0].source = cells[0].source.rstrip() + STUDENT_NOTE
    student.cells = cells
    student.metadata["agkit"] = {"version": "student", "made_from": f"notebooks/{name}"}
    return student


def render(notebook) -> str:
    return nbformat.writes(notebook) + "\n"


def has_exercises(notebook) -> bool:
    """True when a notebook holds a coding exercise (a cell tagged "exercise")."""
    return any("exercise" in tags(cell) for cell in notebook.cells)


def expected_student_versions() -> dict:
    """{student notebook path: its text} for every solution notebook with exercises."""
    out = {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        if has_exercises(notebook):
            out[STUDENT / path.name] = render(student_version(notebook, path.name))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that notebooks/student is up to date"
    )
    args = parser.parse_args(argv)
    expected = expected_student_versions()
    stale = [
        p for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text
    ]
    extra = sorted(set(STUDENT.glob("*.ipynb")) - set(expected))
    if args.check:
        for path in stale + extra:
            print(f"out of date: {path.relative_to(ROOT)}; run `make student`.")
        return 1 if stale or extra else 0
    STUDENT.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(expected[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    for path in extra:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)} (no solution notebook of that name)")
    print(f"{len(expected)} student notebooks up to date in {STUDENT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
