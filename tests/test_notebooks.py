"""The course notebooks: stored clean, built like a lesson, and run top to bottom.

Every notebook is executed with papermill under the "ci" profile (a failure names the
notebook and the cell), then nbval (lax) runs the executed copies again and compares the
outputs of cells marked NBVAL_CHECK_OUTPUT. Training runs are cached in a shared runs
folder, so the nbval pass and the closing summary cost little.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from agkit import run_course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def course_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("course")
    return base / "executed", base / "runs"


def test_there_is_a_course():
    names = [n.name[:2] for n in NOTEBOOKS]
    assert names[:4] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_the_parts_of_a_lesson(path):
    cells = nbformat.read(path, as_version=4).cells
    first = cells[0].source
    assert first.startswith("# ") and "colab.research.google.com" in first, "title and Colab badge first"
    assert "you will" in first.lower(), "say what the student will learn"
    assert "time" in first.lower(), "give a time estimate"
    install = [c for c in cells if "google.colab" in c.source]
    assert install and "pip install" in install[0].source, "a Colab-only install cell"
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "profile" in parameters[0].source
    assert "summary" in cells[-1].source.lower(), "end with a summary"


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, course_dirs):
    executed, runs = course_dirs
    executed.mkdir(parents=True, exist_ok=True)
    try:
        run_course.execute(path, executed, run_course.course_parameters("ci", runs, path))
    except run_course.NotebookFailed as error:
        pytest.fail(str(error), pytrace=False)


@pytest.mark.notebooks
@pytest.mark.slow
def test_nbval_lax_on_executed_notebooks(course_dirs):
    executed, _ = course_dirs
    copies = sorted(executed.glob("*.ipynb"))
    if len(copies) != len(NOTEBOOKS):
        pytest.fail("not every notebook executed; see the failures above", pytrace=False)
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                             *map(str, copies)], capture_output=True, text=True, cwd=ROOT / "notebooks")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.notebooks
@pytest.mark.slow
def test_course_summary_writes_results_json(course_dirs):
    executed, runs = course_dirs
    run_course.summarize_runs("ci", runs, executed)
    results = json.loads((executed / "results.json").read_text())
    for method in ("baseline", "guided"):
        assert set(results[method]) == {"acc_shifted", "acc_id", "auc_shifted", "mass_in_mask"}
        assert all(0.0 <= value <= 1.0 for value in results[method].values())
    assert (executed / "summary.png").stat().st_size > 10_000
