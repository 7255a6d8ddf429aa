"""Colab (agkit.course.colab): runs and masks have a home in any runtime.

Colab itself is simulated: a fake ``google.colab`` module in sys.modules (the
``fake_colab`` and ``not_colab`` fixtures of conftest.py).
"""

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agkit.course import colab
from agkit.data import MaskStore

ROOT = Path(__file__).resolve().parents[2]


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
