"""agkit.experiments.archives: a shareable cache of trained runs, and bad archives refused."""

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from tiny_runs import TINY, FitCalls, copy_of_package, imported_from

from agkit import experiments
from agkit.experiments import store


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

    monkeypatch.setattr(store, "fit", FitCalls(allow=False))
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
        (package / "method/loss.py").read_text() + "\nEDITED = 1\n"
    )
    imported_from(package, monkeypatch)  # a process that runs the edited code
    manifest = experiments.use_cache(archive, tmp_path / "student")
    assert manifest["unpacked"] == 1 and manifest["reusable"] == 0
    fit = FitCalls()
    monkeypatch.setattr(store, "fit", fit)
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
    monkeypatch.setattr(store, "fit", FitCalls(allow=False))  # the student trains nothing
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
