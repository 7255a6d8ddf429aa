"""Colab: the install cell leaves Colab's pins alone, badges and install cells come from one
constant, runs and masks have a home in any runtime, Binder needs no install cell.

Colab itself is simulated: a fake ``google.colab`` module in sys.modules for the helpers
(the ``fake_colab`` fixture of conftest.py), and
for the install a virtual environment holding Colab's pinned Jupyter stack, with the heavy
packages Colab ships (torch, numpy, ...) lent from this interpreter's site-packages.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agkit.course import colab
from agkit.data import MaskStore

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# What the `google-colab` package pins, plus the ipywidgets the runtime ships.
COLAB_PINS = {
    "ipykernel": "6.17.1",
    "ipython": "7.34.0",
    "notebook": "6.5.7",
    "pandas": "2.2.2",
    "tornado": "6.4.2",
    "requests": "2.32.3",
    "ipywidgets": "7.7.1",
}
# Heavy packages Colab has preinstalled; the simulated runtime borrows ours.
COLAB_PREINSTALLED = [
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "matplotlib",
    "scikit-learn",
    "pillow",
    "seaborn",
    "tqdm",
]


# ---------------------------------------------------------------------------------------
# where we are (fake_colab and not_colab: conftest.py)


def test_in_colab_and_widget_manager_outside_colab(not_colab):
    assert colab.in_colab() is False
    assert colab.enable_widget_manager() is False


def test_in_colab_and_widget_manager_on_colab(fake_colab):
    assert colab.in_colab() is True
    assert colab.enable_widget_manager() is True
    assert fake_colab.calls == [("enable_custom_widget_manager",)]


# ---------------------------------------------------------------------------------------
# default_runs_dir


def test_runs_dir_on_colab_is_content_and_drive_mounts_first(fake_colab):
    assert colab.default_runs_dir() == Path("/content/agkit-runs")
    assert fake_colab.calls == []
    assert colab.default_runs_dir(drive=True) == Path("/content/drive/MyDrive/agkit-runs")
    assert fake_colab.calls == [("mount", "/content/drive")]


def test_runs_dir_in_a_source_checkout_is_its_runs_folder(not_colab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a notebook started anywhere gets the same folder
    assert Path(colab.__file__).resolve().parents[2] == ROOT  # tests run on the checkout
    assert colab.default_runs_dir() == ROOT / "runs"


def test_runs_dir_of_an_installed_package_is_the_user_cache(not_colab, tmp_path, monkeypatch):
    site = tmp_path / "site-packages" / "agkit"
    site.mkdir(parents=True)
    monkeypatch.setattr(colab, "__file__", str(site / "course" / "colab.py"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert colab.source_checkout() is None
    runs = colab.default_runs_dir()
    assert runs.is_absolute()
    if sys.platform.startswith("linux"):
        assert runs == tmp_path / "cache" / "agkit" / "runs"


def test_a_folder_named_like_a_checkout_of_another_project_is_not_one(tmp_path, monkeypatch):
    (tmp_path / "agkit").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    monkeypatch.setattr(colab, "__file__", str(tmp_path / "agkit" / "course" / "colab.py"))
    assert colab.source_checkout() is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "agkit"\n')
    assert colab.source_checkout() == tmp_path


def test_drive_outside_colab_is_a_clear_error(not_colab):
    with pytest.raises(ValueError, match="only works on Colab"):
        colab.default_runs_dir(drive=True)


# ---------------------------------------------------------------------------------------
# masks drawn in another runtime


def _store_with_masks(folder):
    store = MaskStore(folder, durable=False)
    a = np.zeros((8, 10), np.uint8)
    a[2:5, 3:7] = 1
    b = np.zeros((8, 10), np.uint8)
    b[0, 0] = b[7, 9] = 1
    store.put("img_a", a, source="drawn", tool="test")
    store.put("img_b", b, source="drawn", tool="test")
    return store, {"img_a": a, "img_b": b}


def test_missing_masks_name_the_folder_and_are_not_created(not_colab, tmp_path):
    folder = tmp_path / "runs" / "annotations" / "synthfrac-ci-seed0"
    with pytest.raises(colab.MissingMasksError) as error:
        colab.require_masks(folder)
    message = str(error.value)
    assert str(folder.resolve()) in message and "no index.json" in message
    assert 'masks = "builtin"' in message and "Run notebook 2" in message
    assert not folder.exists()


def test_an_empty_store_is_missing_masks_too(not_colab, tmp_path):
    MaskStore(tmp_path / "empty")._write_index()
    with pytest.raises(colab.MissingMasksError, match="empty index"):
        colab.require_masks(tmp_path / "empty")


def test_missing_masks_on_colab_say_how_to_carry_them_over(fake_colab, tmp_path):
    with pytest.raises(colab.MissingMasksError) as error:
        colab.require_masks(tmp_path / "masks")
    message = str(error.value)
    assert "fresh runtime" in message and "upload_masks" in message
    assert "default_runs_dir(drive=True)" in message


def test_require_masks_returns_the_store(not_colab, tmp_path):
    _store_with_masks(tmp_path / "masks")
    assert colab.require_masks(tmp_path / "masks").annotated_ids() == ["img_a", "img_b"]


def test_masks_travel_through_a_zip_pixel_for_pixel(not_colab, tmp_path):
    store, masks = _store_with_masks(tmp_path / "there" / "masks")
    archive = colab.download_masks(store.folder)
    assert archive == tmp_path / "there" / "masks.zip"
    assert sorted(zipfile.ZipFile(archive).namelist()) == sorted(
        ["index.json"] + [store.provenance(i)["file"] for i in masks]
    )
    here = colab.upload_masks(tmp_path / "here" / "masks", archive)
    assert here.annotated_ids() == ["img_a", "img_b"]
    for image_id, mask in masks.items():
        np.testing.assert_array_equal(here.get(image_id), mask)
        assert here.provenance(image_id) == store.provenance(image_id)
    assert [p.name for p in (tmp_path / "here").iterdir()] == ["masks"]  # no staging left


def test_masks_travel_through_the_browser_on_colab(fake_colab, tmp_path):
    store, masks = _store_with_masks(tmp_path / "masks")
    archive = colab.download_masks(store.folder)
    assert fake_colab.calls == [("download", str(archive))]
    fake_colab.files.uploads = {"masks.zip": archive.read_bytes()}
    here = colab.upload_masks(tmp_path / "other" / "masks")
    assert ("upload",) in fake_colab.calls
    np.testing.assert_array_equal(here.get("img_b"), masks["img_b"])


def test_uploading_over_drawn_masks_keeps_them(not_colab, tmp_path):
    store, _ = _store_with_masks(tmp_path / "masks")
    archive = colab.download_masks(store.folder, tmp_path / "copy.zip")
    store.delete("img_b")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        colab.upload_masks(store.folder, archive)
    assert MaskStore(store.folder).annotated_ids() == ["img_a"]
    colab.upload_masks(store.folder, archive, overwrite=True)
    assert MaskStore(store.folder).annotated_ids() == ["img_a", "img_b"]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("masks.replaced-")]
    assert len(kept) == 1 and MaskStore(kept[0]).annotated_ids() == ["img_a"]


def test_uploading_into_an_empty_folder_leaves_no_copy_aside(not_colab, tmp_path):
    store, _ = _store_with_masks(tmp_path / "there")
    archive = colab.download_masks(store.folder)
    (tmp_path / "masks").mkdir()  # as notebook 2 leaves it before the first mask is drawn
    colab.upload_masks(tmp_path / "masks", archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "there", "there.zip"]


def test_a_zip_that_escapes_its_folder_is_refused(not_colab, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("index.json", json.dumps({"masks": {}}))
        zf.writestr("../evil.png", b"x")
    with pytest.raises(ValueError, match="outside a mask folder"):
        colab.upload_masks(tmp_path / "sub" / "masks", archive)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "sub" / "masks").exists()


def test_a_zip_with_a_damaged_mask_is_refused(not_colab, tmp_path):
    store, _ = _store_with_masks(tmp_path / "masks")
    archive = colab.download_masks(store.folder)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            target.writestr(name, b"" if name.endswith(".png") else source.read(name))
    with pytest.raises(ValueError, match="damaged"):
        colab.upload_masks(tmp_path / "new", damaged)
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.")]


def test_a_zip_that_is_not_a_mask_store_is_refused(not_colab, tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", b"x")
    with pytest.raises(ValueError, match="no index.json"):
        colab.upload_masks(tmp_path / "masks", archive)


def _respelled(archive, target, change):
    """A copy of the zip ``archive`` at ``target`` with ``change(zf, name, data)`` writing each
    entry (it may write several, or none)."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as zf:
        for name in source.namelist():
            change(zf, name, source.read(name))
    return target


def test_a_zip_with_two_indexes_is_refused_naming_the_zip(not_colab, tmp_path):
    store, _ = _store_with_masks(tmp_path / "there")
    archive = colab.download_masks(store.folder)

    def twice(zf, name, data):
        zf.writestr(name, data)
        if name == "index.json":
            with pytest.warns(UserWarning, match="Duplicate name"):
                zf.writestr(name, b'{"masks": {}}')

    doubled = _respelled(archive, tmp_path / "doubled.zip", twice)
    with pytest.raises(ValueError, match=r"doubled.zip holds 'index.json' more than once") as err:
        colab.upload_masks(tmp_path / "masks", doubled)
    assert ".masks." not in str(err.value)  # never the staging folder, deleted by then
    assert not (tmp_path / "masks").exists()


def test_a_damaged_index_is_named_by_the_zip_not_a_temporary_folder(not_colab, tmp_path):
    store, _ = _store_with_masks(tmp_path / "there")
    archive = colab.download_masks(store.folder)

    def spoil(zf, name, data):
        zf.writestr(name, b"{not json" if name == "index.json" else data)

    spoiled = _respelled(archive, tmp_path / "spoiled.zip", spoil)
    with pytest.raises(ValueError, match=r"The masks in .*spoiled.zip are damaged") as err:
        colab.upload_masks(tmp_path / "masks", spoiled)
    assert ".masks." not in str(err.value)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".masks")] == []


def test_two_uploads_in_one_second_keep_both_old_folders(not_colab, tmp_path, monkeypatch):
    store, _ = _store_with_masks(tmp_path / "there")
    archive = colab.download_masks(store.folder)
    monkeypatch.setattr(colab.time, "strftime", lambda *_: "20261204-120000")  # one second
    colab.upload_masks(tmp_path / "masks", archive)
    colab.upload_masks(tmp_path / "masks", archive, overwrite=True)
    colab.upload_masks(tmp_path / "masks", archive, overwrite=True)
    kept = sorted(p.name for p in tmp_path.iterdir() if ".replaced-" in p.name)
    assert kept == ["masks.replaced-20261204-120000", "masks.replaced-20261204-120000-2"]
    assert all(len(MaskStore(tmp_path / name)) == 2 for name in kept)


def test_only_the_masks_of_a_zip_are_unpacked(not_colab, tmp_path, capsys):
    store, masks = _store_with_masks(tmp_path / "there")
    archive = colab.download_masks(store.folder)

    def add(zf, name, data):
        zf.writestr(name, data)
        if name == "index.json":
            zf.writestr("evil.py", b"import os\n")
            zf.writestr("stray.png", b"not listed by the index")

    extended = _respelled(archive, tmp_path / "extended.zip", add)
    here = colab.upload_masks(tmp_path / "masks", extended)
    on_disk = {p.name for p in (tmp_path / "masks").iterdir() if not p.name.startswith(".")}
    assert on_disk == {"index.json"} | {store.provenance(i)["file"] for i in masks}
    assert here.annotated_ids() == sorted(masks)
    out = capsys.readouterr().out
    assert "Left out 2 file(s)" in out and "evil.py" in out and "stray.png" in out


def test_a_file_that_is_no_zip_is_named(not_colab, tmp_path):
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(b"\xff\xd8 not a zip")
    with pytest.raises(ValueError, match=r"holiday.jpg is not a zip file"):
        colab.upload_masks(tmp_path / "masks", photo)


def test_an_uploaded_file_that_is_no_zip_is_named_as_uploaded(fake_colab, tmp_path):
    fake_colab.files.uploads = {"my_masks.zip": b"PK but broken"}
    with pytest.raises(ValueError, match=r"my_masks.zip is not a zip file"):
        colab.upload_masks(tmp_path / "masks")
    assert list(tmp_path.iterdir()) == []


def test_a_zip_bomb_is_refused_before_unpacking(not_colab, tmp_path, monkeypatch):
    store, _ = _store_with_masks(tmp_path / "there")
    archive = colab.download_masks(store.folder)
    monkeypatch.setattr(colab, "MAX_MASK_ZIP_BYTES", 100)
    with pytest.raises(ValueError, match="would unpack to .* nothing was unpacked"):
        colab.upload_masks(tmp_path / "masks", archive)
    assert not (tmp_path / "masks").exists()


def test_a_failed_download_leaves_no_temporary_zip(not_colab, tmp_path):
    store, masks = _store_with_masks(tmp_path / "masks")
    (store.folder / store.provenance(sorted(masks)[1])["file"]).unlink()  # lost meanwhile
    with pytest.raises(FileNotFoundError):
        colab.download_masks(store.folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


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
    assert _run_cell(colab.install_cell_source()) == []


def test_install_cell_installs_the_kit_alone_on_colab(fake_colab):
    [(magic, line)] = _run_cell(colab.install_cell_source())
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
    colab.stamp(repo)
    for path in sorted((repo / "notebooks").glob("*.ipynb")):
        cells = _cells(path)
        assert f"({colab.colab_url(f'notebooks/{path.name}')})" in "".join(cells[0]["source"])
        [install] = [i for i, c in enumerate(cells) if "google.colab" in "".join(c["source"])]
        assert "".join(cells[install]["source"]) == colab.install_cell_source()
        old = before[path.name]
        assert len(cells) == len(old)
        assert cells[:install] + cells[install + 1 :] == old[:install] + old[install + 1 :]
    assert colab.stamp(repo) == []  # idempotent: a second run changes no file


def _first_cell(path):
    return "".join(_cells(path)[0]["source"])


def test_stamp_follows_the_constant_everywhere(tmp_path, monkeypatch):
    repo = _today_notebooks(tmp_path)
    student = repo / "notebooks" / "student"
    shutil.rmtree(student, ignore_errors=True)  # only notebook 01 has a student version here
    student.mkdir()
    shutil.copy(repo / "notebooks" / "01_baseline_training.ipynb", student)
    monkeypatch.setattr(colab, "REPOSITORY", "a-fork/agkit")
    monkeypatch.setattr(colab, "REF", "v0.2")
    changed = colab.stamp(repo)
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
    assert colab.stamp(repo) == []


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
    image = colab.BADGE_IMAGE
    first = (
        f"# 1 · Title\n\n[![Open In Colab]({image})]({old}01_x.ipynb) **solution version**"
        f" · [![Open In Colab]({image})]({old}student/01_x.ipynb) **student version** "
        "(exercises blank)\n\nText."
    )
    for where in ["notebooks", "notebooks/student"]:
        (tmp_path / where).mkdir(parents=True, exist_ok=True)
        (tmp_path / where / "01_x.ipynb").write_text(
            json.dumps(_notebook(first, colab.install_cell_source())), encoding="utf-8"
        )
    monkeypatch.setattr(colab, "REF", "v1")
    assert len(colab.stamp(tmp_path)) == 2
    for where in ["notebooks", "notebooks/student"]:
        assert _first_cell(tmp_path / where / "01_x.ipynb") == first.replace("/main/", "/v1/")


def test_stamp_adds_a_missing_badge_and_install_cell(tmp_path):
    path = tmp_path / "notebooks" / "09_lesson.ipynb"
    path.parent.mkdir()
    path.write_text(
        json.dumps(_notebook(["# 9 · A lesson\n", "\n", "Some text."], ["x = 1"])), encoding="utf-8"
    )
    assert colab.stamp_notebook(path, tmp_path)
    cells = _cells(path)
    assert "".join(cells[0]["source"]) == (
        f"# 9 · A lesson\n\n{colab.badge('notebooks/09_lesson.ipynb')}\n\nSome text."
    )
    assert "".join(cells[1]["source"]) == colab.install_cell_source()
    assert "".join(cells[2]["source"]) == "x = 1"
    assert not colab.stamp_notebook(path, tmp_path)


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
    assert not colab.stamp_notebook(copy, tmp_path), (
        f"{path.name}: badges or install cell differ from agkit.course.colab; run `make stamp`"
    )


def test_readme_agrees_with_the_constant():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert colab.stamp_text(text) == text, (
        "README's badges differ from agkit.course.colab; `make stamp`"
    )
    assert colab.binder_url() in text and colab.install_requirement() in text


# ---------------------------------------------------------------------------------------
# dependency ranges and Binder


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_base_dependencies_accept_every_colab_pin():
    base = [Requirement(r) for r in _project()["dependencies"]]
    for requirement in base:
        name = canonicalize_name(requirement.name)
        if name in COLAB_PINS:
            assert requirement.specifier.contains(COLAB_PINS[name]), (requirement, COLAB_PINS)
    names = {canonicalize_name(r.name) for r in base}
    assert not names & {
        "jupyterlab",
        "notebook",
        "ipykernel",
        "papermill",
        "tornado",
        "jupyter-client",
    }, "the kit alone must not bring a Jupyter front end"


def _conda_entries(path):
    return yaml.safe_load(path.read_text())["dependencies"]


def test_binder_environment_is_the_kits_runtime_and_course_dependencies():
    entries = _conda_entries(ROOT / "binder" / "environment.yml")
    assert not any(isinstance(e, dict) for e in entries), "Binder has no source tree yet: no pip"
    found = {}
    for entry in entries:
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", entry.replace(" ", "")).groups()
        found[name] = spec
    project = _project()
    expected = {"python": "=3.11", "pip": ""}
    for text in project["dependencies"] + project["optional-dependencies"]["course"]:
        requirement = Requirement(text)
        name = {"torch": "pytorch"}.get(requirement.name, requirement.name)
        expected[name] = str(requirement.specifier)
    assert found == expected


def test_binder_installs_the_checkout_after_the_environment():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)
    assert "pip install --editable ." in post_build
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"({colab.binder_url()}" in readme


# ---------------------------------------------------------------------------------------
# THE test: notebook 01's install cell in a runtime with Colab's pins


def _index_reachable():
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=10).close()
        return True
    except OSError:
        return False


def _closure(seeds, exclude):
    """Installed distributions that ``seeds`` need, with their extras' needs; canonical names."""
    todo, seen = [(canonicalize_name(s), ("",)) for s in seeds], {}
    while todo:
        name, extras = todo.pop()
        if name in exclude:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        new = set(extras) - seen.get(name, set())
        if not new:
            continue
        seen.setdefault(name, set()).update(new)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(
                requirement.marker.evaluate({"extra": e}) for e in new
            ):
                todo.append((canonicalize_name(requirement.name), ("", *requirement.extras)))
    return sorted(seen)


def _lend_packages(names, shelf):
    """Symlink each distribution's top-level files and its .dist-info into ``shelf``."""
    shelf.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if not top.endswith(".pth") and (base / top).exists() and not (shelf / top).exists():
                (shelf / top).symlink_to(base / top)


def _versions(python, names):
    script = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    return json.loads(
        subprocess.run(
            [python, "-c", script, *names], check=True, capture_output=True, text=True
        ).stdout
    )


def _install_command_of_notebook_01(source_uri):
    [path] = (ROOT / "notebooks").glob("01_*.ipynb")
    cells = [("".join(c["source"])) for c in _cells(path) if c["cell_type"] == "code"]
    install = [s for s in cells if "google.colab" in s and "pip install" in s]
    assert install, f"{path.name} has no Colab install cell"
    [line] = [ln.strip() for ln in install[0].splitlines() if ln.strip().startswith("%pip ")]
    args = shlex.split(line)[1:]
    kit = [i for i, a in enumerate(args) if "git+https://github.com/" in a]
    assert len(kit) == 1, f"expected one git requirement in {line!r}"
    args[kit[0]] = re.sub(r"git\+https://github\.com/\S+", source_uri, args[kit[0]])
    return line, args


@pytest.mark.slow
def test_notebook_01_install_cell_leaves_colab_pins_unchanged(tmp_path):
    missing = [n for n in COLAB_PREINSTALLED if _closure([n], set()) == []]
    if missing:
        pytest.skip(f"{missing} are not installed here, so they cannot stand in for Colab's")
    if not _index_reachable():
        pytest.skip("the package index cannot be reached; this test installs Colab's pins from it")
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    runtime = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(runtime)
    python = str(runtime / "bin" / "python")

    def pip(*args, check=True):
        done = subprocess.run(
            [python, "-m", "pip", *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert not check or done.returncode == 0, f"pip {args}:\n{done.stdout}\n{done.stderr}"
        return done

    # Colab's preinstalled scientific stack: this interpreter's copies, lent via a .pth file.
    pip("uninstall", "-y", "-q", "setuptools")  # venv's old copy would hide Colab's newer one
    lent = _closure(COLAB_PREINSTALLED, exclude=set(COLAB_PINS))
    _lend_packages(lent, tmp_path / "preinstalled")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "colab-preinstalled.pth").write_text(f"{tmp_path / 'preinstalled'}\n")
    pins = pip(
        "install",
        "-q",
        "--only-binary=:all:",
        *[f"{name}=={version}" for name, version in COLAB_PINS.items()],
        check=False,
    )
    if pins.returncode and sys.version_info >= (3, 13):
        pytest.skip(
            "Colab's pins (pandas 2.2.2 among them) have no wheels for Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; Colab runs 3.12"
        )
    assert pins.returncode == 0, f"installing Colab's pins failed:\n{pins.stderr}"
    watched = [*COLAB_PINS, *COLAB_PREINSTALLED]
    before = _versions(python, watched)
    assert before == {**before, **COLAB_PINS}
    baseline = pip("check", check=False)
    assert baseline.returncode == 0, f"the simulated Colab is broken already:\n{baseline.stdout}"
    prepared = time.monotonic()

    # Notebook 01's install cell, with the repository replaced by a copy of this checkout.
    source = tmp_path / "agkit-source"
    shutil.copytree(ROOT / "agkit", source / "agkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    line, args = _install_command_of_notebook_01(source.as_uri())
    pip(*args)
    pip("install", "-q", "anywidget")  # the widget's coming front end must fit the pins too
    installed = time.monotonic()

    after = _versions(python, watched)
    report = "\n".join(f"  {n:14} {before[n]!s:>10} -> {after[n]}" for n in watched)
    print(
        f"\n{line}\n{report}\nsimulated runtime {prepared - started:.0f} s, "
        f"install cell + anywidget {installed - prepared:.0f} s"
    )
    assert after == before, f"the install cell changed Colab's packages:\n{report}"
    check = pip("check", check=False)
    assert check.returncode == 0, f"pip check after the install cell:\n{check.stdout}"
    script = "import agkit, agkit.widgets, agkit.course.colab, anywidget; print(agkit.__file__)"
    imported = subprocess.run(
        [python, "-c", script], check=False, capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    installed_package = Path(imported.stdout.strip()).parent
    assert installed_package.is_relative_to(runtime), installed_package

    def package_files(folder):
        return {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    lost = package_files(source / "agkit") - package_files(installed_package)
    assert not lost, f"files of the package that a git install leaves out: {sorted(lost)}"
