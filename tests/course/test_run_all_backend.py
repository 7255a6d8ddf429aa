"""agkit.course.run_all: an executed notebook keeps its figures; bad arguments stop it at once."""

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


def test_a_notebook_prefix_that_names_no_notebook_stops_before_anything_trains(tmp_path, capsys):
    import pytest

    from agkit.course import run_all as run_course

    runs, out = tmp_path / "runs", tmp_path / "out"
    for only in (["07"], ["01", "3"]):  # a typo, and a number without its leading zero
        with pytest.raises(SystemExit) as stopped:
            run_course.main(
                ["--profile", "ci", "--only", *only, "--out", str(out), "--runs", str(runs)]
            )
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert f"--only {only[-1]} names no notebook" in err and "01_baseline_training" in err
    assert not runs.exists() and not out.exists()  # nothing trained, nothing written
    a_file = tmp_path / "a_file"
    a_file.write_text("kept")
    with pytest.raises(SystemExit):
        run_course.main(["--profile", "ci", "--only", "01", "--out", str(a_file / "out")])
    assert "cannot be created" in capsys.readouterr().err and a_file.read_text() == "kept"
