"""agkit.data.mask_store_index: index.json under a full disk, outside the folder, and with
several writers at once."""

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import faults
import numpy as np
import pytest
from PIL import Image
from toy_images import square

from agkit.data.mask_store import MaskStore
from agkit.data.mask_store_index import CorruptIndexError

ROOT = Path(__file__).resolve().parents[2]


def test_two_store_objects_do_not_clobber_each_other(tmp_path):
    a, b = MaskStore(tmp_path), MaskStore(tmp_path)
    a.put("x", np.ones((2, 2)))
    b.put("y", np.zeros((2, 2)))
    assert a.annotated_ids() == ["x", "y"] == MaskStore(tmp_path).annotated_ids()


def test_batch_writes_index_once(tmp_path):
    store = MaskStore(tmp_path, durable=False)
    with store.batch():
        for k in range(5):
            store.put(f"im{k}", square((4, 4), 0, k, 0, 4), source="synthetic")
        assert not (tmp_path / "index.json").exists()
    assert MaskStore(tmp_path).get("im3").sum() == 12


# ------------------------------------------------------------- a full disk
_index_write_fails = faults.index_write_fails


def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.mark.parametrize("no_hard_links", [False, True], ids=["hard_links", "no_hard_links"])
@pytest.mark.parametrize("case", ["new_mask", "overwrite"])
def test_disk_full_on_index_write_restores_png_and_store(
    tmp_path, monkeypatch, case, no_hard_links
):
    store = MaskStore(tmp_path)
    old = square((6, 6), 0, 2, 0, 2)
    store.put("kept", square((6, 6), 3, 6, 3, 6))
    if case == "overwrite":
        store.put("img", old)
    before_files, before_index = _folder_bytes(tmp_path), store.annotated_ids()
    _index_write_fails(monkeypatch, no_hard_links)
    with pytest.raises(OSError, match="nothing was changed") as info:
        store.put("img", square((6, 6), 1, 5, 1, 5))
    assert info.value.errno == 28  # ENOSPC, so callers can still test for it
    # the PNG on disk is the old one byte for byte (or absent), and no spare link is left
    assert _folder_bytes(tmp_path) == before_files
    # the open store and a fresh one agree with index.json: nothing changed
    assert store.annotated_ids() == before_index == MaskStore(tmp_path).annotated_ids()
    if case == "overwrite":
        np.testing.assert_array_equal(store.get("img"), old)
    else:
        assert "img" not in store and store.get("img") is None
    monkeypatch.undo()  # room again: the same put now succeeds
    store.put("img", square((6, 6), 1, 5, 1, 5))
    assert MaskStore(tmp_path).get("img").sum() == 16 and store.check().ok


def test_disk_full_when_the_old_png_cannot_be_put_back_says_so(tmp_path, monkeypatch):
    import errno

    from agkit.data import mask_store_index

    store = MaskStore(tmp_path)
    store.put("img", square((4, 4), 0, 2, 0, 2))
    _index_write_fails(monkeypatch, no_hard_links=True)
    failing = mask_store_index._atomic_write
    writes = []

    def atomic_write(path, data, durable=True):  # the new PNG fits, then the disk is full
        writes.append(Path(path).name)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        failing(path, data, durable)

    monkeypatch.setattr(mask_store_index, "_atomic_write", atomic_write)
    with pytest.raises(OSError, match="could not be put back.*rebuild_index"):
        store.put("img", square((4, 4), 0, 4, 0, 4))
    assert store.get("img") is not None and store.annotated_ids() == ["img"]
    monkeypatch.undo()
    assert MaskStore.rebuild_index(tmp_path).get("img").sum() == 16  # the PNG as it is now


def test_disk_full_on_index_write_keeps_a_deleted_mask(tmp_path, monkeypatch):
    store = MaskStore(tmp_path)
    store.put("img", square((4, 4), 0, 2, 0, 2))
    before = _folder_bytes(tmp_path)
    _index_write_fails(monkeypatch)
    with pytest.raises(OSError, match="nothing was changed"):
        store.delete("img")
    assert _folder_bytes(tmp_path) == before
    assert store.get("img").sum() == 4 and store.annotated_ids() == ["img"]


def test_disk_full_at_the_end_of_a_batch_takes_the_whole_batch_back(tmp_path, monkeypatch):
    store = MaskStore(tmp_path, durable=False)
    store.put("a", square((4, 4), 0, 1, 0, 4))
    before = _folder_bytes(tmp_path)
    _index_write_fails(monkeypatch)
    with pytest.raises(OSError, match="nothing was changed"):
        with store.batch():
            store.put("a", square((4, 4), 0, 4, 0, 4))  # overwritten twice in one batch
            store.put("b", square((4, 4), 0, 2, 0, 2))
            store.put("a", square((4, 4), 0, 3, 0, 4))
    assert _folder_bytes(tmp_path) == before
    assert store.annotated_ids() == ["a"] and store.get("a").sum() == 4


# ------------------------------------------------------------- never outside the folder
def _png_bytes(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_index_naming_a_file_outside_the_folder_is_refused_and_nothing_outside_is_touched(
    tmp_path, kind
):
    victim = tmp_path / "victim.png"  # a user's image next to the store
    victim.write_bytes(_png_bytes(255))
    before = victim.read_bytes()
    folder = tmp_path / "masks"
    store = MaskStore(folder, durable=False)
    store.put("a", np.ones((4, 4)))
    name = {"dotdot": "../victim.png", "absolute": str(victim), "symlink": "evil.png"}[kind]
    if kind == "symlink":
        (folder / "evil.png").symlink_to(victim)
    index = json.loads((folder / "index.json").read_text())
    index["masks"]["evil"] = {
        "file": name,
        "source": "drawn",
        "tool": "",
        "time": "2024-01-01T00:00:00+00:00",
        "shape": [4, 4],
    }
    (folder / "index.json").write_text(json.dumps(index))

    with pytest.raises(CorruptIndexError, match="'evil'.*rebuild_index"):
        MaskStore(folder)
    for action in (
        lambda: store.get("evil"),
        lambda: store.delete("evil"),
        lambda: store.put("evil", np.zeros((4, 4))),
        lambda: store.check(),
    ):
        with pytest.raises(CorruptIndexError, match="'evil'"):
            action()
    assert victim.read_bytes() == before

    # the fix the message proposes touches only the store's own files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a link is skipped with a warning
        rebuilt = MaskStore.rebuild_index(folder)
    assert rebuilt.annotated_ids() == ["a"]
    rebuilt.put("evil", np.zeros((4, 4)))
    rebuilt.delete("evil")
    rebuilt.delete("a")
    assert victim.read_bytes() == before
    if kind == "symlink":
        assert (folder / "evil.png").is_symlink()  # left in place, never read through


# ------------------------------------------------------------------- several writers
CONCURRENT = r"""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import types
for name in ("agkit", "agkit.data"):  # bare packages: skip the __init__ files, which import torch
    package = sys.modules[name] = types.ModuleType(name)
    package.__path__ = [sys.argv[1] + "/" + name.replace(".", "/")]
from agkit.data.mask_store import MaskStore

folder, mode, prefix, n = Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
store = MaskStore(folder, durable=False)
print("ready", flush=True)
while not (folder.parent / "go").exists():
    time.sleep(0.005)
for k in range(n):
    if mode == "put":
        store.put(f"{prefix}{k}", np.eye(8, dtype=np.uint8), source="synthetic")
    else:
        store.delete(f"{prefix}{k}")
"""


def _run_together(tmp_path, folder, jobs):
    """Start one process per (mode, prefix, n) job, release them at once, wait for all."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(ROOT), str(folder), *map(str, job)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        (tmp_path / "go").touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()


def _files_agree_with_index(store):
    pngs = {p.name for p in store.folder.glob("*.png")}
    assert pngs == {store.provenance(i)["file"] for i in store.annotated_ids()}
    report = store.check()
    assert report.ok and not report.temp_files, str(report)


def test_two_processes_putting_150_masks_each_end_with_300_indexed(tmp_path):
    folder = tmp_path / "masks"
    MaskStore(folder)
    _run_together(tmp_path, folder, [("put", "a", 150), ("put", "b", 150)])
    store = MaskStore(folder)
    assert len(store) == 300
    assert set(store.annotated_ids()) == {f"{p}{k}" for p in "ab" for k in range(150)}
    _files_agree_with_index(store)


def test_a_concurrent_delete_and_put_keep_index_and_pngs_in_agreement(tmp_path):
    folder = tmp_path / "masks"
    store = MaskStore(folder, durable=False)
    with store.batch():
        for k in range(150):
            store.put(f"old{k}", np.eye(8, dtype=np.uint8))
    _run_together(tmp_path, folder, [("delete", "old", 150), ("put", "new", 150)])
    store = MaskStore(folder)
    assert store.annotated_ids() == sorted(
        f"new{k}" for k in range(150)
    )  # no deleted mask came back
    _files_agree_with_index(store)
