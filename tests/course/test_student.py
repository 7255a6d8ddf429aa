"""`make student` (agkit.course.student): no solution reaches a student, and no student's file
is lost.

Each test builds a small solution folder in tmp_path: notebooks/01_x.ipynb with one exercise
whose solution is the line ``return SECRET``, and writes its student version next to it.
"""

import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from agkit.course import student

EXERCISE = "def f():\n    # BEGIN SOLUTION\n    return SECRET\n    # END SOLUTION\n"


def solution(source=EXERCISE, **code):
    header = new_markdown_cell("# 1 · A lesson")
    cell = new_code_cell(source, metadata={"tags": ["exercise"]}, **code)
    return new_notebook(cells=[header, cell])


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nbformat.write(solution(), tmp_path / "notebooks" / "01_x.ipynb")
    return tmp_path / "notebooks"


def make(notebooks):
    return student.write_student_versions(notebooks, notebooks / "student")


def student_cell(notebooks, name="01_x.ipynb"):
    return nbformat.read(notebooks / "student" / name, as_version=4).cells[1]


# Malformed or unmatched markers -------------------------------------------------------


@pytest.mark.parametrize(
    ("begin", "end", "bad"),
    [
        ("#BEGIN SOLUTION", "#END SOLUTION", 7),
        ("# begin solution", "# end solution", 7),
        ("# Begin Solution", "# End Solution", 7),
        ("# BEGIN_SOLUTION", "# END_SOLUTION", 7),
        ("x = SECRET  # BEGIN SOLUTION", "y = SECRET  # END SOLUTION", 7),
        ("# BEGIN SOLUTION  # the answer", "# END SOLUTION", 7),
        ("# BEGIN SOLUTION", "return SECRET  # END SOLUTION", 9),
    ],
)
def test_a_marker_lookalike_is_an_error_naming_the_cell(repo, begin, end, bad):
    # After a well-formed block, as a tester wrote them: the old writer kept such lines.
    source = EXERCISE + f"\ndef g():\n    {begin}\n    return SECRET\n    {end}\n"
    nbformat.write(solution(source), repo / "01_x.ipynb")
    with pytest.raises(student.MarkerError) as error:
        make(repo)
    message = str(error.value)
    assert f"01_x.ipynb, cell 1 ('def f():'), line {bad}: " in message
    assert "write '# BEGIN SOLUTION' and '# END SOLUTION' exactly so" in message
    assert not (repo / "student").exists()  # nothing written, nothing leaked


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("def f():\n    # BEGIN SOLUTION\n    return SECRET\n", "line 2: # BEGIN SOLUTION without"),
        ("def f():\n    return SECRET\n    # END SOLUTION\n", "line 3: # END SOLUTION without"),
        (
            "def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return SECRET\n"
            "    # END SOLUTION\n",
            "line 3: # BEGIN SOLUTION inside the block opened on line 2",
        ),
    ],
    ids=["begin-without-end", "end-without-begin", "nested-begin"],
)
def test_unmatched_markers_are_an_error_naming_the_cell(repo, source, says):
    nbformat.write(solution(source), repo / "01_x.ipynb")
    with pytest.raises(
        student.MarkerError, match=f"01_x.ipynb, cell 1 \\('def f\\(\\):'\\), {says}"
    ):
        make(repo)
    assert not (repo / "student").exists()


def test_a_marker_lookalike_outside_an_exercise_cell_is_an_error(repo):
    notebook = solution()
    notebook.cells.append(new_code_cell("x = SECRET  # begin solution"))
    nbformat.write(notebook, repo / "01_x.ipynb")
    with pytest.raises(student.MarkerError, match="cell 2 .*line 1: a solution marker.*not tagged"):
        make(repo)


def test_canonical_markers_at_any_indentation_make_a_blank(repo):
    source = "def f():\n    if True:\n        # BEGIN SOLUTION  \n        return SECRET\n"
    source += "        # END SOLUTION\n    return 0\n"
    nbformat.write(solution(source), repo / "01_x.ipynb")
    make(repo)
    assert student_cell(repo).source == (
        "def f():\n    if True:\n        ...  # your code here\n    return 0"
    )


# Symlinks -----------------------------------------------------------------------------


def test_refuses_a_student_notebook_that_is_a_symlink_to_its_solution(repo):
    before = (repo / "01_x.ipynb").read_bytes()
    (repo / "student").mkdir()
    (repo / "student" / "01_x.ipynb").symlink_to(repo / "01_x.ipynb")
    with pytest.raises(student.StudentError, match="student/01_x.ipynb is a symlink; remove it"):
        make(repo)
    assert (repo / "01_x.ipynb").read_bytes() == before


def test_refuses_a_student_folder_that_is_a_symlink(repo):
    before = (repo / "01_x.ipynb").read_bytes()
    (repo / "student").symlink_to(repo)  # notebooks/student -> notebooks
    with pytest.raises(student.StudentError, match="student is a symlink.*plain folder"):
        make(repo)
    assert (repo / "01_x.ipynb").read_bytes() == before
    assert sorted(p.name for p in repo.iterdir()) == ["01_x.ipynb", "student"]


def test_refuses_a_backup_folder_that_is_a_symlink(repo, tmp_path):
    make(repo)
    edited = edit(repo)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (repo / "student" / "backup").symlink_to(outside)
    with pytest.raises(student.StudentError, match="student/backup is a symlink"):
        make(repo)
    assert list(outside.iterdir()) == []
    assert (repo / "student" / "01_x.ipynb").read_bytes() == edited


def test_writes_over_a_hard_link_by_replacing_it(repo, tmp_path):
    make(repo)
    other = tmp_path / "linked.ipynb"
    os.link(repo / "student" / "01_x.ipynb", other)
    before = other.read_bytes()
    nbformat.write(solution(EXERCISE + "# a changed solution\n"), repo / "01_x.ipynb")
    make(repo)
    assert other.read_bytes() == before  # the other name still holds the old content
    assert "# a changed solution" in student_cell(repo).source


# Files make student did not write ----------------------------------------------------


def test_keeps_a_students_own_notebook(repo):
    (repo / "student").mkdir()
    notes = repo / "student" / "00_my_notes.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("my notes")]), notes)
    garbled = repo / "student" / "07_draft.ipynb"
    garbled.write_bytes(b"\xff not a notebook")
    (repo / "student" / "08_link.ipynb").symlink_to(repo / "nowhere.ipynb")
    kept = {p: p.read_bytes() for p in (notes, garbled)}
    for _ in range(2):
        make(repo)
    for path, content in kept.items():
        assert path.read_bytes() == content
    assert (repo / "student" / "08_link.ipynb").is_symlink()


def test_check_ignores_a_students_own_notebook(repo, monkeypatch):
    monkeypatch.setattr(student, "NOTEBOOKS", repo)
    monkeypatch.setattr(student, "STUDENT", repo / "student")
    make(repo)
    nbformat.write(new_notebook(), repo / "student" / "00_my_notes.ipynb")
    assert student.main(["--check"]) == 0
    (repo / "01_x.ipynb").rename(repo / "02_y.ipynb")
    assert student.main(["--check"]) == 1  # 01's student version is stale, 02's missing


def test_refuses_to_replace_an_unmarked_file_of_a_generated_name(repo):
    (repo / "student").mkdir()
    own = repo / "student" / "01_x.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("mine")]), own)
    before = own.read_bytes()
    with pytest.raises(student.StudentError, match="01_x.ipynb was not written by `make student`"):
        make(repo)
    assert own.read_bytes() == before


def test_removes_only_marked_notebooks_whose_solution_is_gone(repo):
    make(repo)
    nbformat.write(new_notebook(), repo / "student" / "00_my_notes.ipynb")
    (repo / "01_x.ipynb").unlink()
    report = make(repo)
    assert not (repo / "student" / "01_x.ipynb").exists()
    assert (repo / "student" / "00_my_notes.ipynb").exists()
    assert report == ["removed " + str(repo / "student" / "01_x.ipynb") + " (no solution "
                      "notebook with exercises of that name)"]  # fmt: skip


def test_marks_every_generated_notebook_with_its_source_and_hash(repo):
    make(repo)
    written = nbformat.read(repo / "student" / "01_x.ipynb", as_version=4)
    mark = written.metadata["agkit"]
    assert mark["generated_from"] == "notebooks/01_x.ipynb"
    assert mark["sha256"] == student.content_hash(written)
    written.cells[1].source += "\n# edited"
    assert student.content_hash(written) != mark["sha256"]


# A student's edits --------------------------------------------------------------------


def edit(notebooks, text="    return 42  # my answer"):
    path = notebooks / "student" / "01_x.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[1].source = notebook.cells[1].source.replace("...  # your code here", text)
    nbformat.write(notebook, path)
    return path.read_bytes()


def test_keeps_a_students_edits_as_a_backup_before_replacing(repo):
    make(repo)
    edited = edit(repo)
    nbformat.write(solution(EXERCISE + "# changed\n"), repo / "01_x.ipynb")
    report = make(repo)
    [backup] = (repo / "student" / "backup").glob("01_x.*.ipynb")
    assert backup.read_bytes() == edited
    assert (
        report[0]
        == f"{repo / 'student' / '01_x.ipynb'} differs from the version `make student` wrote "
        f"(your edits?): kept a copy in {backup}"
    )
    assert "# changed" in student_cell(repo).source
    assert (repo / "student" / "backup" / ".gitignore").read_text().endswith("*\n")


def test_two_backups_in_one_second_both_kept(repo, monkeypatch):
    monkeypatch.setattr(student.time, "strftime", lambda _: "20260101-120000")
    make(repo)
    first = edit(repo, "    return 1")
    make(repo)
    second = edit(repo, "    return 2")
    make(repo)
    backups = sorted((repo / "student" / "backup").glob("*.ipynb"))
    assert [p.name for p in backups] == [
        "01_x.20260101-120000-2.ipynb",
        "01_x.20260101-120000.ipynb",
    ]
    assert {p.read_bytes() for p in backups} == {first, second}


def test_keeps_a_students_edits_before_removing_a_notebook(repo):
    make(repo)
    edited = edit(repo)
    (repo / "01_x.ipynb").unlink()
    make(repo)
    [backup] = (repo / "student" / "backup").glob("01_x.*.ipynb")
    assert backup.read_bytes() == edited


def test_a_rerun_without_edits_makes_no_backup(repo):
    make(repo)
    assert make(repo) == []  # nothing to do
    nbformat.write(solution(EXERCISE + "# changed\n"), repo / "01_x.ipynb")
    assert make(repo) == [f"wrote {repo / 'student' / '01_x.ipynb'}"]
    assert not (repo / "student" / "backup").exists()


def test_an_older_unhashed_student_version_is_kept_as_a_backup(repo):
    (repo / "student").mkdir()
    old = student.student_version(nbformat.read(repo / "01_x.ipynb", as_version=4), "01_x.ipynb")
    old.metadata["agkit"] = {"version": "student", "made_from": "notebooks/01_x.ipynb"}
    nbformat.write(old, repo / "student" / "01_x.ipynb")
    before = (repo / "student" / "01_x.ipynb").read_bytes()
    make(repo)
    [backup] = (repo / "student" / "backup").glob("*.ipynb")
    assert backup.read_bytes() == before


# Outputs ------------------------------------------------------------------------------


def test_student_version_has_no_outputs_or_execution_counts(repo):
    executed = solution(
        execution_count=7,
        outputs=[new_output("stream", name="stdout", text="SECRET printed\n")],
    )
    executed.cells[1].metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    executed.cells.append(new_code_cell("print(1)", execution_count=8, outputs=[
        new_output("execute_result", data={"text/plain": "SECRET"}, execution_count=8)
    ]))  # fmt: skip
    executed.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(executed, repo / "01_x.ipynb")
    make(repo)
    text = (repo / "student" / "01_x.ipynb").read_text(encoding="utf-8")
    assert "SECRET" not in text
    written = nbformat.read(repo / "student" / "01_x.ipynb", as_version=4)
    for cell in written.cells[1:]:
        assert (
            cell.outputs == [] and cell.execution_count is None and "execution" not in cell.metadata
        )
    assert "widgets" not in written.metadata


# Notebooks that are not UTF-8 ---------------------------------------------------------


def test_a_non_utf8_solution_notebook_is_an_error_naming_the_file(repo, monkeypatch, capsys):
    path = repo / "01_x.ipynb"
    latin1 = path.read_text(encoding="utf-8").encode("latin-1")  # "1 · A lesson": · is 0xb7
    path.write_bytes(latin1)
    line = latin1[: latin1.index(b"\xb7")].count(b"\n") + 1
    monkeypatch.setattr(student, "NOTEBOOKS", repo)
    monkeypatch.setattr(student, "STUDENT", repo / "student")
    assert student.main([]) == 2
    error = capsys.readouterr().err
    assert f"{path}, line {line}: not UTF-8 (byte 0xb7)" in error
    assert "save the notebook as UTF-8" in error and "Traceback" not in error
    assert not (repo / "student").exists()


def test_a_solution_notebook_that_is_not_json_is_an_error_naming_the_file(repo):
    (repo / "01_x.ipynb").write_text("{ not json", encoding="utf-8")
    with pytest.raises(student.UnreadableNotebook, match="01_x.ipynb: not a notebook"):
        make(repo)
