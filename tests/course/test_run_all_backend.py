"""agkit.course.run_all.execute: an executed notebook keeps its figures."""

import os


def test_executed_notebooks_keep_their_figures_whatever_backend_the_caller_uses(
    tmp_path, monkeypatch
):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from agkit.course import run_all as run_course

    monkeypatch.setenv("MPLBACKEND", "Agg")  # as the test suite sets it for itself
    notebook = tmp_path / "01_plot.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()"),
            ],
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        ),
        notebook,
    )
    (tmp_path / "out").mkdir()
    executed = run_course.execute(notebook, tmp_path / "out", {"x": 2})
    outputs = nbformat.read(executed, as_version=4).cells[-1].outputs
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert os.environ["MPLBACKEND"] == "Agg"  # the caller's choice is put back
