"""Student versions of the course notebooks, made from the solution notebooks.

    python -m agkit.course.student            # (re)write notebooks/student/*.ipynb
    python -m agkit.course.student --check    # exit 1 when a student version is out of date

The solution notebooks in ``notebooks/`` are the one source: CI executes them. Their cells
are tagged for what they are in a lesson:

* ``exercise``: a coding exercise; its solution lines sit between ``# BEGIN SOLUTION`` and
  ``# END SOLUTION`` (the markers otter-grader uses too) and become a blank, ``...``, in
  the student version. Each marker stands alone on its line, spelled exactly so; anything
  else that looks like a marker (``#BEGIN SOLUTION``, ``# end solution``, a marker after
  code) is an error naming the cell, so no solution reaches students by a typo;
* ``exercise-intro``: the markdown that sets an exercise, kept as it is;
* ``check``: the instant check after an exercise (``exercises.check_*``), kept as it is;
* ``questionnaire`` and ``answers``: questions, and their answers, which the student
  version replaces with a cell for the student's own answers;
* ``experiment``: an open "try this" experiment; ``setup``, ``parameters``: as named.

A student version has no outputs or execution counts. The student notebooks live one folder
deeper, so relative links in markdown (``](../``) get one more ``../``.

Students work in ``notebooks/student/``, so the writer never loses their work:

* every notebook it writes carries ``metadata["agkit"]``: ``generated_from`` (the solution
  notebook) and ``sha256`` (the hash of the notebook without that field). It replaces or
  removes only files with that mark, and refuses to write where a file without it stands;
* a marked notebook whose content no longer matches its hash was edited (by a student):
  before replacing or removing it, it is copied to ``notebooks/student/backup/``
  as ``<name>.<YYYYmmdd-HHMMSS>.ipynb`` (a notebook Jupyter opens; the folder is ignored by
  git) and the writer says so;
* it follows no symlink: a link at ``notebooks/student`` or at a student notebook is an
  error, so a link to a solution notebook cannot overwrite it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = NOTEBOOKS / "student"
BACKUP = "backup"  # the folder, inside the student folder, for students' edited copies
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
# Whatever a person might have meant as a marker: any case, any spacing, anywhere on a line.
MARKER_LIKE = re.compile(r"\b(begin|end)[\s_-]*solution", re.IGNORECASE)
BLANK = "...  # your code here"
ANSWER_CELL = "**Your answers** (double-click to write):\n\n1. \n2. \n3. \n"
STUDENT_NOTE = (
    "\n\n> **Student version.** The coding exercises have blanks (`...`) for "
    "you to fill in; the cell after each one checks your code and says what "
    "is wrong, if anything. The solution version is the other badge."
)
# What running a notebook records besides its outputs (papermill's and nbclient's timings,
# widget state): none of it belongs in a blank notebook.
RUN_METADATA = ("execution", "papermill", "widgets")


class UnreadableNotebook(ValueError):
    """A notebook file that is not UTF-8 JSON; the message names the file (and line)."""


class StudentError(ValueError):
    """A student version that cannot be made or written; the message names the fix."""


class MarkerError(StudentError):
    """An exercise cell whose solution markers are malformed or do not pair up."""


def read_notebook(path: Path):
    """``nbformat.read`` with an error that names the file, not a traceback."""
    try:
        return nbformat.read(path, as_version=4)
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise UnreadableNotebook(
            f"{path}, line {line}: not UTF-8 (byte {error.object[error.start]:#04x}); "
            "save the notebook as UTF-8 (Jupyter does) and rerun."
        ) from None
    except nbformat.reader.NotJSONError:
        raise UnreadableNotebook(f"{path}: not a notebook (not JSON).") from None
    except OSError as error:
        raise UnreadableNotebook(f"{path}: cannot be read ({error.strerror}).") from None


def tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def split_solution(source: str, where: str = "an exercise cell") -> tuple[list[str], list[str]]:
    """(the lines a student sees, the solution lines) of an exercise cell.

    Every ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block becomes one line
    ``...  # your code here`` at the indentation of its BEGIN marker. Raises MarkerError
    for a line that looks like a marker but is not one, and for markers that do not pair up.
    """
    shown, solution, begin = [], [], 0  # begin: the line of the open BEGIN, 0 when none
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker not in (BEGIN, END) and MARKER_LIKE.search(line):
            raise MarkerError(
                f"{where}, line {number}: {marker!r} looks like a solution marker but is not "
                f"one; write '{BEGIN}' and '{END}' exactly so, each alone on its line."
            )
        if marker == BEGIN:
            if begin:
                raise MarkerError(
                    f"{where}, line {number}: {BEGIN} inside the block opened on line "
                    f"{begin}; close that one with {END} first."
                )
            begin = number
            shown.append(line[: len(line) - len(line.lstrip())] + BLANK)
        elif marker == END:
            if not begin:
                raise MarkerError(
                    f"{where}, line {number}: {END} without {BEGIN}; "
                    f"add '{BEGIN}' above the solution or remove this line."
                )
            begin = 0
        elif begin:
            solution.append(line)
        else:
            shown.append(line)
    if begin:
        raise MarkerError(
            f"{where}, line {begin}: {BEGIN} without {END}; add '{END}' after the solution."
        )
    return shown, solution


def strip_solutions(source: str, where: str = "an exercise cell") -> str:
    """An exercise cell's source with each solution block replaced by one blank line."""
    return "\n".join(split_solution(source, where)[0])


def solution_lines(source: str) -> list[str]:
    """The code lines between the markers of an exercise cell (stripped, non-empty)."""
    return [line.strip() for line in split_solution(source)[1] if line.strip()]


def student_version(notebook, name: str):
    """The student version of one solution notebook (a new NotebookNode, marked and hashed)."""
    student = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(student.cells):
        kinds = tags(cell)
        first = cell.source.strip().split("\n", 1)[0][:60]
        where = f"{name}, cell {index} ({first!r})"
        if "exercise" in kinds:
            blanked = strip_solutions(cell.source, where)  # raises for a malformed marker
            if BEGIN not in cell.source:
                raise MarkerError(
                    f"{where}: tagged 'exercise' but holds no {BEGIN} ... {END} block."
                )
            cell.source = blanked
        elif MARKER_LIKE.search(cell.source):
            number = next(
                n for n, line in enumerate(cell.source.splitlines(), 1) if MARKER_LIKE.search(line)
            )
            raise MarkerError(
                f"{where}, line {number}: a solution marker in a cell that is not tagged "
                "'exercise'; tag it, or the solution would reach students."
            )
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
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
    for key in RUN_METADATA:
        student.metadata.pop(key, None)
    student.metadata["agkit"] = {"version": "student", "generated_from": f"notebooks/{name}"}
    student.metadata["agkit"]["sha256"] = content_hash(student)
    return student


def content_hash(notebook) -> str:
    """sha256 of a notebook's content, leaving out the hash it stores in its metadata."""
    data = copy.deepcopy(dict(notebook))
    data.get("metadata", {}).get("agkit", {}).pop("sha256", None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render(notebook) -> str:
    return nbformat.writes(notebook) + "\n"


def has_exercises(notebook) -> bool:
    """True when a notebook holds a coding exercise (a cell tagged "exercise")."""
    return any("exercise" in tags(cell) for cell in notebook.cells)


def expected_student_versions(notebooks: Path = NOTEBOOKS, student: Path | None = None) -> dict:
    """{student notebook path: its text} for every solution notebook with exercises."""
    student = notebooks / "student" if student is None else student
    out = {}
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        notebook = read_notebook(path)
        if has_exercises(notebook):
            out[student / path.name] = render(student_version(notebook, path.name))
    return out


def _mark(path: Path) -> tuple[str, str] | None:
    """(the hash a file stores, the hash of its content) when this tool wrote it, else None."""
    try:
        notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        mark = notebook.metadata["agkit"]
        if mark.get("version") != "student":
            return None
    except (ValueError, KeyError, AttributeError, TypeError):  # not UTF-8 JSON, or no mark
        return None
    # An older version of this tool wrote "made_from" and no hash: it counts as edited.
    if "generated_from" in mark or "made_from" in mark:
        return str(mark.get("sha256", "")), content_hash(notebook)
    return None


def _backup(path: Path) -> Path:
    """Copy ``path`` into the backup folder under a name that no file has yet."""
    folder = path.parent / BACKUP  # plan() refused a link there
    folder.mkdir(exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Students' own copies, kept by `make student`.\n*\n", encoding="utf-8")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for count in range(1, 1000):
        target = folder / f"{path.stem}.{stamp}{'' if count == 1 else f'-{count}'}.ipynb"
        try:
            with open(target, "xb") as file:  # "x": never replaces a file, nor follows a link
                file.write(path.read_bytes())
            return target
        except FileExistsError:
            continue
    raise StudentError(f"{folder}: too many backups of {path.name} this second.")


def _write(path: Path, text: str) -> None:
    """Write through a new file renamed over ``path``: a hard link or a link is replaced,
    never written through, and a failed write leaves the old file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def plan(notebooks: Path = NOTEBOOKS, student: Path | None = None):
    """What ``make student`` would do: (expected {path: text}, writes, removals, backups).

    Raises StudentError (listing every file) where it would follow a link or replace a
    file it did not write; nothing is written then.
    """
    student = notebooks / "student" if student is None else student
    if student.is_symlink() or (student.exists() and not student.is_dir()):
        raise StudentError(
            f"{_shown(student)} is a symlink or not a folder; `make student` follows no links "
            "(a link could point at the solution notebooks). Replace it with a plain folder."
        )
    expected = expected_student_versions(notebooks, student)
    writes: list[Path] = []
    removals: list[Path] = []
    backups: list[Path] = []
    refused: list[str] = []
    present = sorted(student.glob("*.ipynb")) if student.is_dir() else []
    for path in sorted(set(expected) | set(present)):
        target = path in expected
        if path.is_symlink():
            if target:
                refused.append(f"{_shown(path)} is a symlink; remove it (it is never followed).")
            continue  # a student's own link: left alone
        if not path.exists():
            writes.append(path)  # only an expected notebook can be missing
            continue
        if not path.is_file():
            if target:
                refused.append(f"{_shown(path)} is not a file; move it away, then rerun.")
            continue
        if target and path.read_bytes() == expected[path].encode("utf-8"):
            continue
        mark = _mark(path)
        if mark is None:
            if target:
                refused.append(
                    f"{_shown(path)} was not written by `make student` (no agkit mark in its "
                    "metadata), so it is not replaced; rename or move it, then rerun."
                )
            continue  # a student's own notebook: never removed
        stored, actual = mark
        new = content_hash(nbformat.reads(expected[path], as_version=4)) if target else None
        # Edited: its content is neither what was written last time nor what is written now
        # (`make stamp`, say, changes a solution and its student version alike).
        if actual not in (stored, new):
            backups.append(path)
        (writes if target else removals).append(path)
    folder = student / BACKUP
    if backups and (folder.is_symlink() or (folder.exists() and not folder.is_dir())):
        refused.append(f"{_shown(folder)} is a symlink or not a folder; make it a plain folder.")
    if refused:
        raise StudentError("make student wrote nothing:\n  " + "\n  ".join(refused))
    return expected, writes, removals, backups


def write_student_versions(notebooks: Path = NOTEBOOKS, student: Path | None = None) -> list[str]:
    """Bring the student folder up to date; returns one line per file it touched."""
    student = notebooks / "student" if student is None else student
    expected, writes, removals, backups = plan(notebooks, student)
    report = []
    student.mkdir(parents=True, exist_ok=True)
    for path in backups:
        kept = _backup(path)
        report.append(
            f"{_shown(path)} differs from the version `make student` wrote (your edits?): "
            f"kept a copy in {_shown(kept)}"
        )
    for path in writes:
        _write(path, expected[path])
        report.append(f"wrote {_shown(path)}")
    for path in removals:
        path.unlink()
        report.append(f"removed {_shown(path)} (no solution notebook with exercises of that name)")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only check that notebooks/student is up to date"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            _, writes, removals, _ = plan(NOTEBOOKS, STUDENT)
            for path in writes + removals:
                print(f"out of date: {_shown(path)}; run `make student`.")
            return 1 if writes or removals else 0
        for line in write_student_versions(NOTEBOOKS, STUDENT):
            print(line)
    except (StudentError, UnreadableNotebook) as error:
        print(f"make student: {error}", file=sys.stderr)
        return 2
    print(f"student notebooks up to date in {_shown(STUDENT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
