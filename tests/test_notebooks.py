"""The course notebooks: stored clean, built like a lesson, and run top to bottom.

Every notebook is executed with papermill under the "ci" profile (a failure names the
notebook and the cell), then nbval (lax) runs the executed copies again and compares the
outputs of cells marked NBVAL_CHECK_OUTPUT. Training runs are cached in a shared runs
folder, so the nbval pass and the closing summary cost little.

The exercises: every check cell must print ✓ on the solution notebooks and ✗ with its hint
on the blanks of the student versions in notebooks/student/, which must be up to date and
hold none of the solution code.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from agkit import experiments
from agkit.course import exercises, student
from agkit.course import run_all as run_course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# The notebooks with exercises (and so with student versions); 06 is an extension without.
EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if student.has_exercises(nbformat.read(p, as_version=4))]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def tagged(cells, tag):
    return [c for c in cells if tag in c.metadata.get("tags", [])]


def outputs_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
    return "".join(parts)


def check_name(cell) -> str:
    found = re.fullmatch(r"exercises\.(check_\w+)\((\w+)\)", cell.source.strip())
    assert found, f"a check cell is one call exercises.check_x(function), got {cell.source!r}"
    return found.group(1)


def assert_checks_pass(notebook, name):
    for cell in tagged(notebook.cells, "check"):
        text = outputs_text(cell)
        assert text.startswith("✓") and text.count("\n") == 1, (
            f"{name}: {cell.source} printed {text!r}"
        )


def test_there_is_a_course():
    names = [n.name[:2] for n in NOTEBOOKS]
    assert [n.name[:2] for n in EXERCISE_NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    assert names[:4] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_the_parts_of_a_lesson(path):
    cells = nbformat.read(path, as_version=4).cells
    first = cells[0].source
    assert first.startswith("# ") and "colab.research.google.com" in first, (
        "title and Colab badge first"
    )
    assert "you will" in first.lower(), "say what the student will learn"
    assert "time" in first.lower(), "give a time estimate"
    install = [c for c in cells if "google.colab" in c.source]
    assert install and "pip install" in install[0].source, "a Colab-only install cell"
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "profile" in parameters[0].source
    headings = [
        c.source.lstrip() for c in cells if c.cell_type == "markdown" and c.source.startswith("## ")
    ]
    assert headings[-1].lower().startswith("## summary"), "end with a summary section"
    assert "**next:**" in cells[-1].source.lower() or "summary" in cells[-1].source.lower()


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, course_dirs):
    executed, runs = course_dirs
    executed.mkdir(parents=True, exist_ok=True)
    try:
        copy = run_course.execute(path, executed, run_course.course_parameters("ci", runs, path))
    except run_course.NotebookFailed as error:
        pytest.fail(str(error), pytrace=False)
    notebook = nbformat.read(copy, as_version=4)
    assert_checks_pass(notebook, path.name)
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            # progress bars are text that ends finished, never a widget frozen at its first frame
            if WIDGET_VIEW in data:
                assert "MaskAnnotator" in cell.source, f"{path.name} cell {index}: a widget output"
            bar = data.get("text/plain", "") + output.get("text", "")
            if re.search(r"\d+%\|", bar):
                finished = [
                    re.search(r"100%\||stopped early", line)
                    for line in bar.splitlines()
                    if "%|" in line
                ]
                assert all(finished), (
                    f"{path.name} cell {index}: an unfinished progress bar {bar[:200]!r}"
                )


@pytest.mark.notebooks
@pytest.mark.slow
def test_nbval_lax_on_executed_notebooks(course_dirs):
    executed, _ = course_dirs
    copies = sorted(executed.glob("*.ipynb"))
    if len(copies) != len(NOTEBOOKS):
        pytest.fail("not every notebook executed; see the failures above", pytrace=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-q",
            "-p",
            "no:cacheprovider",
            *map(str, copies),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT / "notebooks",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.notebooks
@pytest.mark.slow
def test_course_summary_writes_results_json(course_dirs):
    executed, runs = course_dirs
    run_course.summarize_runs("ci", runs, executed)
    results = json.loads((executed / "results.json").read_text())
    for method in ("baseline", "guided"):
        assert set(results[method]) == {
            "accuracy_shifted",
            "accuracy_id",
            "auc_shifted",
            "mass_in_mask",
        }
        assert all(0.0 <= value <= 1.0 for value in results[method].values())
    assert (executed / "summary.png").stat().st_size > 10_000


@pytest.mark.notebooks
@pytest.mark.slow
def test_notebook_4_queues_exactly_the_runs_its_sections_ask_for(course_dirs):
    # it queues experiments.ablation_configs up front (and make course's trainer trains
    # them): a run its inline lists added or dropped would train for nothing or wait
    _, runs = course_dirs
    table = runs / "results" / "ablations-ci.csv"
    if not table.is_file():
        pytest.fail("notebook 04 did not run; see its failure above", pytrace=False)
    profile = experiments.get_profile("ci")
    lam, _ = experiments.choose_lambda(profile, runs, progress=False)
    queued = {
        c.key() for group in experiments.ablation_configs(profile, lam).values() for c in group
    }
    assert set(pd.read_csv(table)["key"]) == queued


# --------------------------------------------------------------------------------------
# Exercises: questions, coding exercises with checks, experiments; student versions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_exercises_questions_and_experiments(path):
    cells = nbformat.read(path, as_version=4).cells
    assert f"notebooks/{path.name}" in cells[0].source, "a badge for the solution version"
    assert f"notebooks/student/{path.name}" in cells[0].source, "a badge for the student version"
    questionnaire = tagged(cells, "questionnaire")
    assert len(questionnaire) == 1
    questions = re.findall(r"^\d+\. ", questionnaire[0].source, flags=re.MULTILINE)
    assert 5 <= len(questions) <= 10, f"{len(questions)} questions"
    answers = tagged(cells, "answers")
    assert len(answers) == 1
    assert len(re.findall(r"^\d+\. ", answers[0].source, flags=re.MULTILINE)) == len(questions)
    exercise_cells = tagged(cells, "exercise")
    assert 2 <= len(exercise_cells) <= 4, f"{len(exercise_cells)} coding exercises"
    experiments = tagged(cells, "experiment")
    assert len(experiments) == 1
    assert 1 <= len(re.findall(r"^- \*\*", experiments[0].source, flags=re.MULTILINE)) <= 2
    setup_cells = tagged(cells, "setup")
    assert len(setup_cells) == 1 and "nb = setup(" in setup_cells[0].source
    assert cells.index(setup_cells[0]) == cells.index(tagged(cells, "parameters")[0]) + 1


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_is_followed_by_its_check(path):
    cells = nbformat.read(path, as_version=4).cells
    for cell in tagged(cells, "exercise"):
        after = cells[cells.index(cell) + 1]
        assert "check" in after.metadata.get("tags", []), (
            f"no check cell after {cell.source[:60]!r}"
        )
        name = check_name(after)
        assert hasattr(exercises, name), f"exercises.{name} does not exist"
        function = re.search(r"^def (\w+)\(", cell.source, flags=re.MULTILINE).group(1)
        assert after.source.strip().endswith(f"({function})"), "check the exercise's function"


def test_student_versions_are_up_to_date():
    expected = student.expected_student_versions()
    committed = sorted((ROOT / "notebooks" / "student").glob("*.ipynb"))
    assert sorted(expected) == committed, "run `make student`"
    for path, text in expected.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is out of date: run `make student`"
        )


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_student_version_holds_no_solution_code(path):
    solution = nbformat.read(path, as_version=4)
    blank = nbformat.read(ROOT / "notebooks" / "student" / path.name, as_version=4)
    text = "\n".join(cell.source for cell in blank.cells)
    assert student.BEGIN not in text and student.END not in text
    for cell in tagged(solution.cells, "exercise"):
        for line in student.solution_lines(cell.source):
            assert line not in text, f"{path.name}: the student version holds {line!r}"
    answers = tagged(solution.cells, "answers")[0].source
    assert answers not in text, "the answers stay in the solution version"
    assert len(blank.cells) == len(solution.cells)


def test_student_tool_says_where_markers_do_not_pair_up():
    cell = nbformat.v4.new_code_cell(
        "def f():\n    # BEGIN SOLUTION\n    return 1\n", metadata={"tags": ["exercise"]}
    )
    header = nbformat.v4.new_markdown_cell("# t [d](../data/x.md)")
    notebook = nbformat.v4.new_notebook(cells=[header, cell])
    with pytest.raises(student.MarkerError, match="x.ipynb, cell 1.*without # END SOLUTION"):
        student.student_version(notebook, "x.ipynb")
    cell.metadata["tags"] = []
    cell.source += "    # END SOLUTION\n"
    with pytest.raises(student.MarkerError, match="not tagged 'exercise'"):
        student.student_version(notebook, "x.ipynb")
    cell.metadata["tags"] = ["exercise"]
    blanked = student.student_version(notebook, "x.ipynb").cells[1].source
    assert blanked == "def f():\n    ...  # your code here"
    header = student.student_version(notebook, "x.ipynb").cells[0].source
    assert header.startswith("# t [d](../../data/x.md)")  # one folder deeper


def exercise_cells(path: Path, runs: Path) -> list:
    """A notebook's parameters, setup, exercise and check cells, set to the ci profile."""
    cells = [
        c
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code"
        and {"parameters", "setup", "exercise", "check"} & set(c.metadata.get("tags", []))
    ]
    for cell in cells:
        cell.metadata["notebook"] = path.name
        if "parameters" in cell.metadata["tags"]:
            cell.source += f"\nprofile = 'ci'\nruns_dir = {str(runs)!r}\n"
    return cells


@pytest.mark.notebooks
def test_checks_fail_with_their_hint_on_the_student_blanks(tmp_path):
    # The exercise and check cells of every student notebook, one notebook after the other,
    # in one kernel (one start instead of five). On the solutions,
    # test_notebook_runs_top_to_bottom asserts that every check passes.
    student_dir = ROOT / "notebooks" / "student"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        c for path in EXERCISE_NOTEBOOKS for c in exercise_cells(student_dir / path.name, tmp_path)
    ]
    NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(student_dir)}},
    ).execute()
    checks = tagged(notebook.cells, "check")
    assert {c.metadata["notebook"] for c in checks} == {p.name for p in EXERCISE_NOTEBOOKS}
    for cell in checks:
        check = getattr(exercises, check_name(cell))
        _, hint = check.verdict(lambda *args: None)  # what a blank function returns
        printed = outputs_text(cell)
        where = f"{cell.metadata['notebook']}: {cell.source}"
        assert printed.startswith("✗"), f"{where} passed on a blank"
        assert printed.strip() == hint, f"{where} printed {printed!r}, not {hint!r}"
