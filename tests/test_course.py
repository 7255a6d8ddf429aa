"""Course plumbing: cached runs and their keys, lambda chosen on validation only, degraded masks,
summaries, mask-store checks, time limits and the shareable cache of trained runs."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
import pandas as pd
import pytest
import torch

from agkit import experiments
from agkit.data import MaskStore
from agkit.data.mask_quality import bounding_boxes, degrade, dilate, shift

TINY = experiments.Profile(
    name="test",
    size=32,
    backbone="tiny",
    n_train=32,
    n_val=16,
    n_test=16,
    epochs=1,
    batch_size=16,
    lr=3e-3,
    seeds=(0,),
    lambdas=(1.0,),
    time_limit=None,
    ablation_n_train=32,
    ablation_seeds=(0,),
    ablation_lambdas=(0.0,),
    ablation_sizes=(32,),
    ablation_fractions=(1.0,),
    ablation_qualities=("exact",),
)


class FitCalls:
    """Stands in for experiments.fit: counts calls, then trains for real (or refuses)."""

    def __init__(self, allow: bool = True):
        self.calls, self.allow, self.real = [], allow, experiments.fit

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        if not self.allow:
            pytest.fail("a stored run was trained again")
        return self.real(*args, **kwargs)


def without_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "train_seconds"}


def test_config_key_changes_with_every_field():
    base = experiments.guided_config(TINY, 1.0)
    assert base.key() == experiments.guided_config(TINY, 1.0).key()
    for change in (
        {"lam": 2.0},
        {"seed": 1},
        {"mask_quality": "box"},
        {"annotated_fraction": 0.5},
        {"resolution": "input"},
        {"masks_version": "abc"},
        {"lr_decay_at": 0.5},
        {"epochs": 2},
        {"annotated_ids": ("train_00001",)},
        {"annotated_share": 0.25},
    ):
        assert experiments.guided_config(TINY, **{"lam": 1.0, **change}).key() != base.key()
    # the time limit decides whether a run finishes, never what it gives
    assert experiments.guided_config(TINY, 1.0, time_limit=5).key() == base.key()


def test_run_is_cached_and_reloadable(tmp_path, monkeypatch):
    config = experiments.guided_config(TINY, 1.0)
    first = experiments.run(config, tmp_path, progress=False, device="cpu")
    assert {
        "accuracy_id",
        "accuracy_shifted",
        "auc_shifted",
        "mass_in_mask",
        "accuracy_val",
        "pointing_game_shifted",
        "iou_val",
        "source_hash",
        "masks_hash",
    } <= set(first)
    assert not [k for k in first if k.startswith("acc_")]  # one name per idea: accuracy_
    assert first["epochs_run"] == first["epochs"] == 1 and first["device"] == "cpu"
    monkeypatch.setattr(experiments, "fit", FitCalls(allow=False))
    assert experiments.run(config, tmp_path) == first  # same everything: reused
    model = experiments.load_model(config, tmp_path)
    out = model(torch.rand(2, 1, 32, 32))
    assert out.cams.shape == (2, 2, 4, 4)


# ---- issue 9 item 4: results never depend on machine speed


def test_time_limit_hit_raises_and_stores_nothing(tmp_path):
    config = experiments.guided_config(TINY, 1.0, epochs=3, time_limit=1e-6)
    message = r"time limit of 1e-06 s after \d of 3 epochs"
    with pytest.raises(experiments.TimeLimitReached, match=message):
        experiments.run(config, tmp_path, progress=False, device="cpu")
    assert not experiments.is_stored(config, tmp_path)
    assert not list(tmp_path.rglob("result.json"))


def test_same_result_alone_and_under_load(tmp_path):
    config = experiments.guided_config(TINY, 1.0, epochs=2, time_limit=600)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a notebook's process; run_many's workers have one thread
    try:
        alone = experiments.run(config, tmp_path / "alone", progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    torch.set_num_threads(1)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        loaded = experiments.run(config, tmp_path / "loaded", progress=False, device="cpu")
    finally:
        hog.kill()
        hog.wait()
        torch.set_num_threads(threads)
    assert without_timing(loaded) == without_timing(alone)
    weights = [
        torch.load(tmp_path / d / "experiments" / config.key() / "model.pt", weights_only=True)
        for d in ("alone", "loaded")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ---- issue 9 item 8: a stored run is reused only when config, masks and source are the same


def copy_of_package(tmp_path):
    copy = tmp_path / "agkit"
    shutil.copytree(experiments.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_edited_source_forces_retrain(tmp_path, monkeypatch):
    package = copy_of_package(tmp_path)
    monkeypatch.setattr(experiments, "PACKAGE_ROOT", package)
    config = experiments.guided_config(TINY, 1.0)
    experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    fit = FitCalls()
    monkeypatch.setattr(experiments, "fit", fit)
    experiments.run(config, tmp_path / "runs", progress=False)
    assert fit.calls == []  # nothing changed: reused

    losses = package / "method/loss.py"
    losses.write_text(losses.read_text() + "\n# a student's edit\n")
    with pytest.raises(experiments.SourceChangedError, match="Restart the kernel"):
        experiments.run(config, tmp_path / "runs", progress=False, device="cpu")  # runs old code
    assert fit.calls == []
    monkeypatch.setattr(experiments, "_loaded_source", {})  # a restarted kernel imports the edit
    edited = experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert len(fit.calls) == 1  # the edit retrains
    assert edited["source_hash"] == experiments.source_fingerprint(package)
    assert len(list((tmp_path / "runs" / "experiments").iterdir())) == 2


def test_source_fingerprint_reads_content_not_timestamps(tmp_path):
    package = copy_of_package(tmp_path)
    before = experiments.source_fingerprint(package)
    metrics = package / "method/metrics.py"
    text = metrics.read_text()
    metrics.write_text(text)  # same bytes, new timestamp
    assert experiments.source_fingerprint(package) == before
    metrics.write_bytes(text.replace("\n", "\r\n").encode())  # a Windows checkout
    assert experiments.source_fingerprint(package) == before
    metrics.write_text(text.replace("def ", "def  ", 1))
    assert experiments.source_fingerprint(package) != before


@pytest.mark.parametrize("module", ["data/io.py", "data/mask_store.py", "data/shapes.py"])
def test_editing_a_data_module_changes_every_key(tmp_path, monkeypatch, module):
    # issue 23: io.py scales every SynthFrac image and mask_store.py reads every drawn mask,
    # yet an edit of either left the keys unchanged and a stale run was reused
    package = copy_of_package(tmp_path)
    monkeypatch.setattr(experiments, "PACKAGE_ROOT", package)
    config = experiments.guided_config(TINY, 1.0)
    before = config.key()
    path = package / module
    path.write_text(path.read_text() + "\nSCALE_FIX = 1  # an edit\n")
    assert config.key() != before


def test_editing_presentation_code_keeps_the_keys(tmp_path, monkeypatch):
    package = copy_of_package(tmp_path)
    monkeypatch.setattr(experiments, "PACKAGE_ROOT", package)
    config = experiments.guided_config(TINY, 1.0)
    before = config.key()
    for module in (
        "course/plots.py",
        "course/notebook.py",
        "widgets/annotator.py",
        "course/exercises.py",
    ):
        path = package / module
        path.write_text(path.read_text() + "\n# an edit\n")
    assert config.key() == before


def test_source_files_follow_imports_of_every_kind(tmp_path):
    package = tmp_path / "agkit"
    (package / "sub").mkdir(parents=True)
    (package / "experiments").mkdir()
    (package / "experiments" / "__init__.py").write_text(
        "import importlib\nfrom agkit.sub import thing\n"
        "def later():\n    import agkit.lazy\n    importlib.import_module('agkit.dynamic')\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "thing.py").write_text("from agkit.deep import x\n")
    for name in ("lazy", "dynamic", "deep", "unused"):
        (package / f"{name}.py").write_text("x = 1\n")
    assert experiments.source_files(package) == [
        "experiments/__init__.py",
        "deep.py",
        "dynamic.py",
        "lazy.py",
        "sub/__init__.py",
        "sub/thing.py",
    ]


def test_every_module_a_run_imports_is_hashed(tmp_path):
    # whatever code a run executes is in its key: train a tiny run in a fresh process and
    # compare the agkit modules it loaded with the files the fingerprint reads
    script = f"""
import sys
from agkit import experiments
profile = experiments.Profile(name="t", size=32, backbone="tiny", n_train=16, n_val=8, n_test=8,
    epochs=1, batch_size=8, lr=3e-3, seeds=(0,), lambdas=(1.0,), time_limit=None,
    ablation_n_train=16, ablation_seeds=(0,), ablation_lambdas=(0.0,), ablation_sizes=(32,),
    ablation_fractions=(1.0,), ablation_qualities=("exact",))
experiments.run(experiments.guided_config(profile, 1.0), {str(tmp_path)!r}, progress=False, device="cpu")
experiments.run(experiments.few_mask_config(profile, 1.0), {str(tmp_path)!r}, progress=False, device="cpu")
for name, module in sorted(sys.modules.items()):
    if name.startswith("agkit.") and getattr(module, "__file__", None):
        print(name, module.__file__)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    hashed = set(experiments.source_files())
    loaded = {
        experiments.Path(line.split()[1]).resolve().relative_to(experiments.PACKAGE_ROOT).as_posix()
        for line in out.splitlines()
    }
    assert "data/io.py" in loaded and "data/mask_store.py" in loaded
    assert loaded <= hashed, f"run code outside the key: {sorted(loaded - hashed)}"


def drawn_store(folder, config, n=8):
    """A MaskStore with a box drawn on the first n training images of ``config``."""
    train = experiments.make_splits(config)["train"]
    store = MaskStore(folder)
    for i in range(n):
        mask = np.zeros((config.size, config.size), np.uint8)
        mask[8:20, 8:20] = 1
        store.put(train.image_ids[i], mask)
    return store, train


def test_changed_mask_png_forces_retrain(tmp_path, monkeypatch):
    folder = tmp_path / "masks"
    config = experiments.guided_config(TINY, 1.0, masks_from=str(folder))
    store, train = drawn_store(folder, config)
    first = experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert first["masks_hash"] == experiments.store_fingerprint(folder)

    png = store.path(train.image_ids[0])
    png.touch()  # a new timestamp alone changes nothing
    assert config.key() == first["key"]
    mask = np.zeros((TINY.size, TINY.size), np.uint8)
    mask[2:6, 2:6] = 1
    changed = MaskStore(tmp_path / "scratch").put(train.image_ids[0], mask)
    index = (folder / "index.json").read_bytes()
    png.write_bytes(changed.read_bytes())  # the PNG's bytes change; the index does not
    assert (folder / "index.json").read_bytes() == index
    assert config.key() != first["key"]
    fit = FitCalls()
    monkeypatch.setattr(experiments, "fit", fit)
    experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert len(fit.calls) == 1


# ---- issue 9 item 9: guided training with no drawn mask stops with a clear message


def test_annotations_from_missing_or_empty_store_say_how_many_and_where(tmp_path):
    folder = experiments.annotation_folder(TINY, tmp_path, seed=0)
    missing = r"found 0 masks in .*seed0 \(the folder does not exist\)"
    with pytest.raises(experiments.NoMasksError, match=missing):
        experiments.mask_changes("annotations", TINY, tmp_path, seed=0)
    assert not folder.exists()  # asking did not create the store
    MaskStore(folder)
    with pytest.raises(experiments.NoMasksError, match=r"found 0 masks in .*seed0; guided"):
        experiments.mask_changes("annotations", TINY, tmp_path, seed=0)
    assert experiments.mask_changes("builtin", TINY, tmp_path) == {}


def test_masks_of_other_images_stop_training(tmp_path, monkeypatch):
    folder = tmp_path / "masks"
    mask = np.zeros((TINY.size, TINY.size), np.uint8)
    mask[4:9, 4:9] = 1
    MaskStore(folder).put("an-image-of-another-dataset", mask)
    config = experiments.guided_config(TINY, 1.0, masks_from=str(folder))
    monkeypatch.setattr(experiments, "fit", lambda *a, **k: pytest.fail("trained without masks"))
    message = "found 1 masks in .*none of them for the 32 training images"
    with pytest.raises(experiments.NoMasksError, match=message):
        experiments.run(config, tmp_path / "runs", progress=False, device="cpu")


def test_annotations_give_changes_that_train_on_the_drawn_masks(tmp_path):
    folder = experiments.annotation_folder(TINY, tmp_path, seed=0)
    drawn_store(folder, experiments.baseline_config(TINY, 0))
    changes = experiments.mask_changes("annotations", TINY, tmp_path, seed=0)
    assert changes == {"masks_from": str(folder), "data_seed": 0}
    datasets = experiments.make_datasets(experiments.guided_config(TINY, 1.0, **changes))
    assert int(sum(bool(datasets["train"][i][3]) for i in range(TINY.n_train))) == 8


# ---- issue 9 item 10: changes apply to baseline and guided alike; device reaches fit


def test_main_comparison_applies_every_change_to_both(monkeypatch, tmp_path):
    seen = []

    def fake_run_many(configs, runs_dir, **kwargs):
        configs = list(configs)
        seen.append((configs, kwargs))
        return pd.DataFrame(
            {"lam": [c.lam for c in configs], "accuracy_val": 0.9, "mass_in_mask_val": 0.5}
        )

    monkeypatch.setattr(experiments, "run_many", fake_run_many)
    changes = {"n_train": 48, "data_seed": 7, "masks_from": str(tmp_path), "mask_quality": "box"}
    experiments.main_comparison(TINY, tmp_path, progress=False, device="cpu", **changes)
    for configs, kwargs in seen:
        assert kwargs["device"] == "cpu"
        for config in configs:
            assert {k: getattr(config, k) for k in changes} == changes
    compared = seen[-1][0]
    assert [c.lam > 0 for c in compared] == [False, True]


def test_device_is_passed_to_fit(tmp_path, monkeypatch):
    fit = FitCalls()
    monkeypatch.setattr(experiments, "fit", fit)
    configs = [experiments.baseline_config(TINY, 0), experiments.guided_config(TINY, 1.0, 0)]
    experiments.run_many(configs, tmp_path, progress=False, jobs=1, device="cpu")
    assert [str(call["device"]) for call in fit.calls] == ["cpu", "cpu"]


def test_workers_give_the_numbers_of_the_notebook_process_and_are_reused(tmp_path):
    configs = [experiments.baseline_config(TINY, 0), experiments.guided_config(TINY, 1.0, 0)]
    here = experiments.run_many(configs, tmp_path / "here", progress=False, jobs=1, device="cpu")
    try:
        pooled = experiments.run_many(
            configs, tmp_path / "pool", progress=False, jobs=2, device="cpu"
        )
        pool = experiments._pool["executor"]
        more = [experiments.guided_config(TINY, 3.0, 0), experiments.guided_config(TINY, 1.0, 1)]
        experiments.run_many(more, tmp_path / "pool", progress=False, jobs=2, device="cpu")
        assert experiments._pool["executor"] is pool  # no new processes for the second call
        for worker in list(pool._processes.values()):
            worker.kill()  # killed from outside (out of memory, a task manager)
            worker.join()
        last = [experiments.guided_config(TINY, 3.0, 1), experiments.guided_config(TINY, 1.0, 2)]
        experiments.run_many(last, tmp_path / "pool", progress=False, jobs=2, device="cpu")
        assert all(experiments.is_stored(c, tmp_path / "pool") for c in last)
    finally:
        experiments.shutdown_workers()
    columns = [c for c in here.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(pooled[columns], here[columns])


# ---- issue 13 item 2: a shareable cache of trained runs


def test_packed_runs_are_reused_from_a_path_or_file_url(tmp_path, monkeypatch):
    configs = [experiments.baseline_config(TINY, 0), experiments.guided_config(TINY, 1.0, 0)]
    trained = experiments.run_many(
        configs, tmp_path / "teacher", progress=False, jobs=1, device="cpu"
    )
    archive = experiments.pack_runs(
        configs, tmp_path / "teacher", tmp_path / "runs.tar.gz", profile="test"
    )
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
    assert names[-1] == "manifest.json" and len(names) == 1 + 3 * len(configs)

    monkeypatch.setattr(experiments, "fit", FitCalls(allow=False))
    manifest = experiments.use_cache(archive.as_uri(), tmp_path / "student")
    assert manifest["unpacked"] == manifest["reusable"] == 2 and manifest["profile"] == "test"
    again = experiments.run_many(configs, tmp_path / "student", progress=False, jobs=1)
    pd.testing.assert_frame_equal(again, trained)
    assert experiments.use_cache(archive, tmp_path / "student")["unpacked"] == 0  # kept as they are


def test_packed_runs_of_other_source_are_never_reused(tmp_path, monkeypatch):
    config = experiments.guided_config(TINY, 1.0)
    experiments.run(config, tmp_path / "teacher", progress=False, device="cpu")
    archive = experiments.pack_runs([config], tmp_path / "teacher", tmp_path / "runs.tar.gz")
    package = copy_of_package(tmp_path)
    (package / "method/loss.py").write_text(
        (package / "method/loss.py").read_text() + "\n# edited\n"
    )
    monkeypatch.setattr(experiments, "PACKAGE_ROOT", package)
    manifest = experiments.use_cache(archive, tmp_path / "student")
    assert manifest["unpacked"] == 1 and manifest["reusable"] == 0
    fit = FitCalls()
    monkeypatch.setattr(experiments, "fit", fit)
    experiments.run(config, tmp_path / "student", progress=False, device="cpu")
    assert len(fit.calls) == 1  # the edited source trains again


def test_use_cache_offline_and_bad_archives(tmp_path):
    message = "could not download the runs archive http://127.0.0.1:9/"
    with pytest.raises(ConnectionError, match=message):
        experiments.use_cache("http://127.0.0.1:9/agkit-runs.tar.gz", tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match="make cache"):
        experiments.use_cache(tmp_path / "missing.tar.gz", tmp_path / "runs")
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="not a runs archive"):
        experiments.use_cache(tmp_path / "empty.tar.gz", tmp_path / "runs")
    evil = tmp_path / "evil.tar.gz"
    (tmp_path / "x").write_text('{"runs": {}}')
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "x", "manifest.json")
        tar.add(tmp_path / "x", "../outside.txt")
    with pytest.raises(ValueError, match=r"'\.\./outside.txt'\); nothing was unpacked"):
        experiments.use_cache(evil, tmp_path / "runs")
    assert not (tmp_path / "outside.txt").exists()
    (tmp_path / "x").write_text('{"runs": {"../../outside": "baseline"}}')
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(tmp_path / "x", "manifest.json")
        tar.add(tmp_path / "x", "experiments/../../outside/result.json")
    with pytest.raises(ValueError, match="12-digit keys; nothing was unpacked"):
        experiments.use_cache(evil, tmp_path / "runs")
    assert not (tmp_path / "outside").exists()


KEY = "0123456789ab"


def hand_made_archive(path, manifest=None, files=None, *, manifest_entry=None, extra=()):
    """A runs archive written entry by entry, to spoil one thing at a time."""
    manifest = {"format": "agkit runs", "runs": {KEY: "baseline"}} if manifest is None else manifest
    files = {name: b"x" for name in experiments.RUN_FILES} if files is None else files
    with tarfile.open(path, "w:gz") as tar:
        if manifest_entry is not None:
            tar.addfile(manifest_entry)
        else:
            data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in files.items():
            info = tarfile.TarInfo(f"experiments/{KEY}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def nothing_unpacked(runs_dir):
    experiments = runs_dir / "experiments"
    return not experiments.exists() or not any(experiments.iterdir())


def test_a_hand_made_archive_unpacks(tmp_path):  # the control for the spoiled ones below
    manifest = experiments.use_cache(hand_made_archive(tmp_path / "a.tar.gz"), tmp_path / "runs")
    assert manifest["unpacked"] == 1
    assert (tmp_path / "runs" / "experiments" / KEY / "model.pt").read_bytes() == b"x"
    assert [p.name for p in (tmp_path / "runs" / "experiments").iterdir()] == [KEY]


@pytest.mark.parametrize("kind", ["symlink", "folder"])
def test_a_manifest_that_is_no_file_is_refused(tmp_path, kind):
    entry = tarfile.TarInfo("manifest.json")
    if kind == "symlink":
        entry.type, entry.linkname = tarfile.SYMTYPE, f"experiments/{KEY}/result.json"
    else:
        entry.type = tarfile.DIRTYPE
    archive = hand_made_archive(tmp_path / "a.tar.gz", manifest_entry=entry)
    with pytest.raises(ValueError, match="manifest.json is not a small regular file"):
        experiments.use_cache(archive, tmp_path / "runs")
    assert nothing_unpacked(tmp_path / "runs")


def test_a_manifest_that_is_not_json_is_refused(tmp_path):
    archive = hand_made_archive(tmp_path / "a.tar.gz", b"\xff{not json")
    with pytest.raises(ValueError, match=r"a.tar.gz: its manifest.json is not JSON"):
        experiments.use_cache(archive, tmp_path / "runs")


def test_a_manifest_listing_missing_files_unpacks_nothing(tmp_path):
    archive = hand_made_archive(tmp_path / "a.tar.gz", files={"result.json": b"{}"})
    with pytest.raises(ValueError, match=r"2 of their files are not in the archive"):
        experiments.use_cache(archive, tmp_path / "runs")
    assert nothing_unpacked(tmp_path / "runs")  # no .unpacking folder left behind


def test_an_archive_cut_in_half_is_named_damaged(tmp_path):
    big = {name: np.random.default_rng(0).bytes(200_000) for name in experiments.RUN_FILES}
    whole = hand_made_archive(tmp_path / "whole.tar.gz", files=big).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut.tar.gz is damaged .*copy it again"):
        experiments.use_cache(cut, tmp_path / "runs")
    assert nothing_unpacked(tmp_path / "runs")


def test_an_oversized_or_sparse_member_is_refused_before_writing(tmp_path):
    huge = tarfile.TarInfo(f"experiments/{KEY}/model.pt")
    huge.size = 300 << 20  # announced as 300 MiB; the bytes themselves are never read
    archive = tmp_path / "huge.tar"
    with tarfile.open(archive, "w") as tar:  # written by hand: tarfile would want the bytes
        data = json.dumps({"runs": {KEY: "baseline"}}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name in ("result.json", "history.csv"):
            info = tarfile.TarInfo(f"experiments/{KEY}/{name}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        tar.fileobj.write(huge.tobuf(tarfile.GNU_FORMAT))
        tar.fileobj.seek((300 << 20) - 1, 1)  # a sparse 300 MiB hole on disk
        tar.fileobj.write(b"\0")
        tar.offset = tar.fileobj.tell()
    with pytest.raises(ValueError, match=r"model.pt is 300 MiB, more than .*nothing was unpacked"):
        experiments.use_cache(archive, tmp_path / "runs")
    assert nothing_unpacked(tmp_path / "runs")
    sparse = tarfile.TarInfo(f"experiments/{KEY}/history.csv")
    sparse.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(ValueError, match="entries a runs archive never has"):
        experiments.use_cache(
            hand_made_archive(tmp_path / "s.tar.gz", files={}, extra=[(sparse, None)]),
            tmp_path / "runs",
        )


def test_an_entry_listed_twice_is_refused(tmp_path):
    info = tarfile.TarInfo(f"experiments/{KEY}/model.pt")
    info.size = 1
    archive = hand_made_archive(tmp_path / "a.tar.gz", extra=[(info, b"y")])
    with pytest.raises(ValueError, match="lists an entry twice"):
        experiments.use_cache(archive, tmp_path / "runs")


def test_a_failed_pack_leaves_no_temporary_file(tmp_path, monkeypatch):
    config = experiments.baseline_config(TINY, 0)
    folder = tmp_path / "runs" / "experiments" / config.key()
    folder.mkdir(parents=True)
    (folder / "result.json").write_text('{"label": "baseline"}')  # model.pt, history.csv lost
    with pytest.raises(FileNotFoundError):
        experiments.pack_runs([config], tmp_path / "runs", tmp_path / "out" / "runs.tar.gz")
    assert list((tmp_path / "out").iterdir()) == []


def test_make_cache_packs_every_run_of_a_profile(tmp_path, monkeypatch):
    from agkit.course import run_all as run_course

    monkeypatch.setitem(experiments.PROFILES, "test", TINY)
    archive = run_course.pack_profile(
        "test", tmp_path / "teacher", tmp_path / "runs.tar.gz", device="cpu", jobs=1
    )
    monkeypatch.setattr(experiments, "fit", FitCalls(allow=False))  # the student trains nothing
    manifest = experiments.use_cache(archive, tmp_path / "student")
    lam = experiments.choose_lambda(TINY, tmp_path / "student", jobs=1, progress=False)[0]
    wanted = {c.key() for group in experiments.course_configs(TINY, lam).values() for c in group}
    assert set(manifest["runs"]) == wanted and manifest["unpacked"] == len(wanted)
    assert all(
        experiments.is_stored(c, tmp_path / "student")
        for group in experiments.course_configs(TINY, lam).values()
        for c in group
    )


def test_pack_refuses_runs_never_trained(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not stored"):
        experiments.pack_runs(
            [experiments.baseline_config(TINY, 0)], tmp_path, tmp_path / "a.tar.gz"
        )


# ---- lambda, summaries, profiles, masks


def test_lambda_is_chosen_on_validation_with_mass_as_tie_break(monkeypatch):
    fake = pd.DataFrame(
        {
            "lam": [0.1, 1.0, 10.0],
            "accuracy_val": [0.90, 0.895, 0.70],
            "mass_in_mask_val": [0.3, 0.8, 0.9],
            "accuracy_shifted": [0.99, 0.1, 0.1],
        }
    )
    monkeypatch.setattr(experiments, "run_many", lambda *a, **k: fake)
    lam, table = experiments.choose_lambda(TINY)
    assert lam == 1.0  # within a point of the best validation accuracy, more mass inside
    assert "accuracy_shifted" not in table  # the test split plays no part


def test_summarize_means_over_seeds():
    table = pd.DataFrame(
        {
            "method": ["baseline", "baseline", "guided"],
            "accuracy_shifted": [0.4, 0.6, 0.9],
            "accuracy_id": [1, 1, 1],
            "auc_shifted": [0.5, 0.5, 0.9],
            "mass_in_mask": [0.1, 0.3, 0.8],
        }
    )
    summary = experiments.summarize(table)
    assert summary.loc["baseline", "accuracy_shifted"] == pytest.approx(0.5)
    assert summary.loc["guided", "mass_in_mask"] == pytest.approx(0.8)


def test_course_configs_list_each_notebooks_runs():
    profile = experiments.get_profile("workshop")
    runs = experiments.course_configs(profile, 3.0)
    assert runs["01"] == [experiments.baseline_config(profile, 0)]
    assert len(runs["03"]) == len(profile.lambdas) + 2 * len(profile.seeds) + 1
    control = runs["03"][-1]  # the random choice of as many built-in masks as a student draws
    assert len(control.annotated_ids) == experiments.FEW_MASKS and control.masks_from is None
    ablations = experiments.ablation_configs(profile, 3.0)
    assert sum(map(len, ablations.values())) == len(runs["04"])
    assert {c.n_train for c in ablations["size"]} == set(profile.ablation_sizes)


def test_unknown_profile_is_explained():
    with pytest.raises(ValueError, match="choose one of ci, workshop, full"):
        experiments.get_profile("huge")


def test_mask_degradations_by_hand():
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, 2, 3] = masks[0, 0, 5, 6] = 1
    box = bounding_boxes(masks)[0, 0]
    assert box[2:6, 3:7].all() and box.sum() == 16
    grown = dilate(masks, 1)[0, 0]
    assert grown.sum() == 18 and grown[1:4, 2:5].all()
    moved = shift(masks, 2, seed=0)
    assert moved.sum() <= masks.sum() and not torch.equal(moved, masks)
    assert torch.equal(degrade(masks, "exact"), masks)
    with pytest.raises(ValueError, match="unknown mask quality"):
        degrade(masks, "blurry")


# ---- issue 15: few-mask runs (annotated_ids, annotated_share) are ordinary cached runs


class LoaderSpy:
    """Stands in for experiments.fit: records the has_mask and image of every batch it is given."""

    def __init__(self):
        self.has_mask, self.images, self.real = [], [], experiments.fit

    def __call__(self, model, loader, *args, **kwargs):
        for _, _, masks, has_mask in loader:
            self.has_mask.append(has_mask)
            self.images.append(masks.flatten(1).sum(1))
        return self.real(model, loader, *args, **kwargs)


def test_annotated_ids_key_is_the_set_of_ids():
    a = experiments.few_mask_config(TINY, 1.0, annotated_ids=["train_00003", "train_00001"])
    b = experiments.few_mask_config(TINY, 1.0, annotated_ids=("train_00001", "train_00003"))
    assert a.annotated_ids == ("train_00001", "train_00003") and a.key() == b.key()
    c = experiments.few_mask_config(TINY, 1.0, annotated_ids=["train_00001"])
    assert c.key() != a.key() and c.label == "guided (lambda=1, 1 masks)"
    d = experiments.few_mask_config(TINY, 1.0, annotated_ids=["train_00001"], share=0.5)
    assert d.key() != c.key()
    with pytest.raises(ValueError, match="annotated_share"):
        experiments.guided_config(TINY, 1.0, annotated_share=1.0)


def test_run_with_annotated_ids_trains_only_those_images_with_masks(tmp_path, monkeypatch):
    train = experiments.make_splits(experiments.baseline_config(TINY, 0))["train"]
    chosen = [train.image_ids[i] for i in (2, 5, 11)]
    config = experiments.few_mask_config(TINY, 1.0, annotated_ids=chosen, share=None)
    dataset = experiments.make_datasets(config)["train"]
    assert dataset.mask_kept.nonzero().flatten().tolist() == [2, 5, 11]
    spy = LoaderSpy()
    monkeypatch.setattr(experiments, "fit", spy)
    result = experiments.run(config, tmp_path, progress=False, device="cpu")
    has_mask = torch.cat(spy.has_mask)
    assert len(has_mask) == TINY.n_train and int(has_mask.sum()) == 3  # one epoch, 3 masks
    assert result["annotated_ids"] == sorted(chosen)
    with pytest.raises(ValueError, match="not training images"):
        experiments.make_datasets(
            experiments.few_mask_config(TINY, 1.0, annotated_ids=["elsewhere"])
        )


def test_run_honours_the_annotated_share():
    train = experiments.make_splits(experiments.baseline_config(TINY, 0))["train"]
    config = experiments.few_mask_config(TINY, 1.0, annotated_ids=train.image_ids[:2], share=0.5)
    loader = experiments.training_loader(config, experiments.make_datasets(config)["train"])
    draws = torch.cat([batch[3] for _ in range(20) for batch in loader])
    assert len(draws) == 20 * TINY.n_train
    assert 0.42 < draws.float().mean() < 0.58  # 2 of 32 images, half of the draws
    plain = experiments.few_mask_config(TINY, 1.0, annotated_ids=train.image_ids[:2], share=None)
    unshared = experiments.training_loader(plain, experiments.make_datasets(plain)["train"])
    assert int(torch.cat([b[3] for b in unshared]).sum()) == 2


def test_few_mask_run_from_a_store_oversamples_the_images_it_has_masks_for(tmp_path, monkeypatch):
    folder = tmp_path / "masks"
    base = experiments.baseline_config(TINY, 0)
    drawn_store(folder, base, n=4)
    config = experiments.few_mask_config(TINY, 1.0, masks_from=str(folder), data_seed=0, share=0.5)
    spy = LoaderSpy()
    monkeypatch.setattr(experiments, "fit", spy)
    experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    has_mask = torch.cat(spy.has_mask)
    assert len(has_mask) == TINY.n_train
    # 4 of 32 images (12.5 %) have masks; oversampled to about half of the draws
    assert int(has_mask.sum()) >= 10
    assert (torch.cat(spy.images)[has_mask] == 144).all()  # the drawn 12 x 12 boxes


def test_your_masks_run_uses_the_store_and_oversamples_it(tmp_path):
    folder = experiments.annotation_folder(TINY, tmp_path, seed=0)
    drawn_store(folder, experiments.baseline_config(TINY, 0), n=4)
    config, n, fallback = experiments.your_masks_config(TINY, 1.0, 0, tmp_path)
    assert (n, fallback) == (4, "")
    assert config.masks_from == str(folder) and config.annotated_ids == ()
    assert config.annotated_share == experiments.ANNOTATED_SHARE and config.lam == 1.0


def test_your_masks_run_without_notebook_02_falls_back_to_the_kits_proposal(tmp_path):
    config, n, fallback = experiments.your_masks_config(
        TINY, 1.0, 0, tmp_path, strategy="random", n=5
    )
    assert n == 5 and config.masks_from is None
    assert list(config.annotated_ids) == sorted(experiments.annotation_proposal(TINY, "random")[:5])
    assert "found 0 masks" in fallback and "5 images the kit proposes first" in fallback
    assert experiments.make_datasets(config)["train"].mask_kept.sum() == 5


def test_stored_runs_show_no_progress_bar_with_a_fictional_rate(tmp_path, capsys):
    configs = [experiments.baseline_config(TINY, 0)]
    experiments.run_many(configs, tmp_path, progress=False, jobs=1, device="cpu")
    capsys.readouterr()
    experiments.run_many(configs, tmp_path, desc="again", jobs=1, device="cpu")
    out, err = capsys.readouterr()
    assert "again: all 1 runs are stored" in out and "nothing to train" in out
    assert "it/s" not in err and "again" not in err  # no bar when nothing trains


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
