"""The badges and install cells of the notebooks (agkit.course.stamp): one repository, one ref;
the install cell does nothing outside Colab and installs the kit alone on Colab."""

import json
import shlex
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from agkit.course import stamp

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------
# the install cell and the badges: one repository, one ref


def _run_cell(source):
    """Run a notebook cell as IPython would; returns the line magics it called."""
    from IPython.core.inputtransformer2 import TransformerManager

    magics = []

    class Shell:
        def run_line_magic(self, name, line, *_):
            magics.append((name, line))

    exec(TransformerManager().transform_cell(source), {"get_ipython": Shell})  # noqa: S102
    return magics


def test_install_cell_does_nothing_outside_colab(not_colab):
    assert _run_cell(stamp.install_cell_source()) == []


def test_install_cell_installs_the_kit_alone_on_colab(fake_colab):
    [(magic, line)] = _run_cell(stamp.install_cell_source())
    assert magic == "pip"
    assert shlex.split(line) == [
        "install",
        "-q",
        "agkit @ git+https://github.com/agkit-course/agkit@main",
    ]
    assert Requirement(shlex.split(line)[-1]).extras == set()


def _today_notebooks(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(
        ROOT / "notebooks", copy / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    shutil.copy(ROOT / "README.md", copy / "README.md")
    return copy


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_stamp_writes_the_install_cell_and_nothing_else(tmp_path):
    repo = _today_notebooks(tmp_path)
    before = {p.name: _cells(p) for p in (repo / "notebooks").glob("*.ipynb")}
    stamp.stamp(repo)
    for path in sorted((repo / "notebooks").glob("*.ipynb")):
        cells = _cells(path)
        assert f"({stamp.colab_url(f'notebooks/{path.name}')})" in "".join(cells[0]["source"])
        [install] = [i for i, c in enumerate(cells) if "google.colab" in "".join(c["source"])]
        assert "".join(cells[install]["source"]) == stamp.install_cell_source()
        old = before[path.name]
        assert len(cells) == len(old)
        assert cells[:install] + cells[install + 1 :] == old[:install] + old[install + 1 :]
    assert stamp.stamp(repo) == []  # idempotent: a second run changes no file


def _first_cell(path):
    return "".join(_cells(path)[0]["source"])


def test_stamp_follows_the_constant_everywhere(tmp_path, monkeypatch):
    repo = _today_notebooks(tmp_path)
    student = repo / "notebooks" / "student"
    shutil.rmtree(student, ignore_errors=True)  # only notebook 01 has a student version here
    student.mkdir()
    shutil.copy(repo / "notebooks" / "01_baseline_training.ipynb", student)
    monkeypatch.setattr(stamp, "REPOSITORY", "a-fork/agkit")
    monkeypatch.setattr(stamp, "REF", "v0.2")
    changed = stamp.stamp(repo)
    assert repo / "README.md" in changed and student / "01_baseline_training.ipynb" in changed
    for path in [repo / "README.md", *repo.glob("notebooks/**/*.ipynb")]:
        text = path.read_text(encoding="utf-8")
        assert "agkit-course" not in text, path
    fork = "https://colab.research.google.com/github/a-fork/agkit/blob/v0.2/notebooks/"
    for path in [
        repo / "notebooks" / "01_baseline_training.ipynb",
        student / "01_baseline_training.ipynb",
    ]:  # both get both badges
        first = _first_cell(path)
        assert f"{fork}01_baseline_training.ipynb)" in first, path
        assert f"{fork}student/01_baseline_training.ipynb) **student version**" in first, path
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert "https://mybinder.org/v2/gh/a-fork/agkit/v0.2" in readme
    assert stamp.stamp(repo) == []


def _notebook(first_cell, *code):
    return {
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": first_cell}]
        + [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": c,
            }
            for c in code
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_stamp_keeps_a_solution_and_a_student_badge_in_place(tmp_path, monkeypatch):
    old = "https://colab.research.google.com/github/agkit-course/agkit/blob/main/notebooks/"
    image = stamp.BADGE_IMAGE
    first = (
        f"# 1 · Title\n\n[![Open In Colab]({image})]({old}01_x.ipynb) **solution version**"
        f" · [![Open In Colab]({image})]({old}student/01_x.ipynb) **student version** "
        "(exercises blank)\n\nText."
    )
    for where in ["notebooks", "notebooks/student"]:
        (tmp_path / where).mkdir(parents=True, exist_ok=True)
        (tmp_path / where / "01_x.ipynb").write_text(
            json.dumps(_notebook(first, stamp.install_cell_source())), encoding="utf-8"
        )
    monkeypatch.setattr(stamp, "REF", "v1")
    assert len(stamp.stamp(tmp_path)) == 2
    for where in ["notebooks", "notebooks/student"]:
        assert _first_cell(tmp_path / where / "01_x.ipynb") == first.replace("/main/", "/v1/")


def test_stamp_adds_a_missing_badge_and_install_cell(tmp_path):
    path = tmp_path / "notebooks" / "09_lesson.ipynb"
    path.parent.mkdir()
    path.write_text(
        json.dumps(_notebook(["# 9 · A lesson\n", "\n", "Some text."], ["x = 1"])), encoding="utf-8"
    )
    assert stamp.stamp_notebook(path, tmp_path)
    cells = _cells(path)
    assert "".join(cells[0]["source"]) == (
        f"# 9 · A lesson\n\n{stamp.badge('notebooks/09_lesson.ipynb')}\n\nSome text."
    )
    assert "".join(cells[1]["source"]) == stamp.install_cell_source()
    assert "".join(cells[2]["source"]) == "x = 1"
    assert not stamp.stamp_notebook(path, tmp_path)


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("student/*.ipynb")
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_agrees_with_the_constant(path, tmp_path):
    copy = tmp_path / path.relative_to(ROOT)
    copy.parent.mkdir(parents=True)
    shutil.copy(path, copy)
    if (ROOT / "notebooks" / "student" / path.name).is_file():
        (tmp_path / "notebooks" / "student").mkdir(parents=True, exist_ok=True)
        (tmp_path / "notebooks" / "student" / path.name).touch()
    assert not stamp.stamp_notebook(copy, tmp_path), (
        f"{path.name}: badges or install cell differ from agkit.course.stamp; run `make stamp`"
    )


def test_readme_agrees_with_the_constant():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert stamp.stamp_text(text) == text, (
        "README's badges differ from agkit.course.stamp; `make stamp`"
    )
    assert stamp.binder_url() in text and stamp.install_requirement() in text
