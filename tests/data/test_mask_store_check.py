"""agkit.data.mask_store_check: MaskStore.check and rebuild_index, corrupt and missing files."""

import numpy as np
import pytest
from PIL import Image
from toy_images import MURA_ID, square

from agkit.data.mask_store import MaskStore
from agkit.data.mask_store_index import CorruptIndexError
from agkit.data.mask_store_png import CorruptMaskError


def test_corrupt_and_missing_png(tmp_path):
    store = MaskStore(tmp_path)
    store.put("a", square((8, 8), 2, 6, 2, 6))
    store.put("b", np.ones((8, 8)))
    pa = store.path("a")
    pa.write_bytes(pa.read_bytes()[:30])  # truncated
    with pytest.raises(CorruptMaskError, match=f"{pa.name}.*store.delete\\('a'\\)"):
        store.get("a")
    store.path("b").unlink()
    with pytest.raises(FileNotFoundError, match="store.delete\\('b'\\)"):
        store.get("b")
    assert store.annotated_ids() == ["a", "b"]  # the index is kept
    report = store.check(["a", "b"])
    assert report.corrupt == ["a"] and report.missing_files == ["b"] and not report.ok
    store.delete("a")
    store.put("a", np.ones((8, 8)))  # re-annotate
    assert store.get("a").sum() == 64


def test_check_orphans_unannotated_unindexed_shapes(tmp_path):
    store = MaskStore(tmp_path)
    store.put("img1", np.ones((3, 3)))
    store.put("gone", np.ones((3, 3)))
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "stray.png")
    report = store.check(["img1", "img2"], image_shapes={"img1": (4, 3)})
    assert report.orphans == ["gone"] and report.unannotated == ["img2"]
    assert report.unindexed_files == ["stray.png"] and report.wrong_shape == ["img1"]
    assert "rebuild_index" in str(report) and not report.ok
    assert MaskStore(tmp_path / "fresh").check(["x"]).ok


def test_corrupt_index_is_kept_and_rebuilt(tmp_path):
    store = MaskStore(tmp_path)
    masks = {MURA_ID: square((5, 6), 0, 3, 1, 4), "plain": np.ones((2, 3), np.uint8)}
    for iid, m in masks.items():
        store.put(iid, m, source="imported", tool="coco")
    Image.fromarray(square((4, 4), 1, 3, 1, 3) * 255).save(tmp_path / "foreign.png")
    bad = b'{"masks": {"plain": {"file": '  # a half-written index
    (tmp_path / "index.json").write_bytes(bad)
    with pytest.raises(CorruptIndexError, match="rebuild_index"):
        MaskStore(tmp_path)
    assert (tmp_path / "index.json").read_bytes() == bad  # not overwritten
    rebuilt = MaskStore.rebuild_index(tmp_path)
    assert rebuilt.annotated_ids() == sorted([MURA_ID, "plain", "foreign"])
    for iid, m in masks.items():
        np.testing.assert_array_equal(rebuilt.get(iid), m)
        assert rebuilt.provenance(iid)["tool"] == "coco"
    assert rebuilt.get("foreign").sum() == 4
    backups = list(tmp_path.glob("index.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == bad
    (tmp_path / "index.json").write_text('["not", "a", "store"]')
    with pytest.raises(CorruptIndexError, match="layout"):
        MaskStore(tmp_path)


def test_missing_index_with_pngs_warns(tmp_path):
    MaskStore(tmp_path).put("a", np.ones((2, 2)))
    (tmp_path / "index.json").unlink()
    with pytest.warns(UserWarning, match="rebuild_index"):
        MaskStore(tmp_path)
