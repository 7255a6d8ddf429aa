"""A shareable cache of trained runs: ``pack_runs`` packs a profile's runs into one archive,
``use_cache`` unpacks it (from a path or a URL) after checking every entry."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from agkit.experiments.configs import CACHE_VERSION
from agkit.experiments.fingerprints import source_fingerprint
from agkit.experiments.store import read_result

MANIFEST = "manifest.json"
RUN_FILES = ("result.json", "model.pt", "history.csv")
# a run that propagates masks also stores the masks it trained with (store.load_propagated)
OPTIONAL_RUN_FILES = ("propagated.pt",)


def pack_runs(
    configs, runs_dir="runs", archive="build/agkit-runs.tar.gz", *, profile: str = ""
) -> Path:
    """Pack the stored runs of ``configs`` into one .tar.gz archive for ``use_cache``.

    The archive holds ``experiments/<key>/`` (result.json, model.pt, history.csv, and
    propagated.pt where the run has one) of every run and a manifest.json listing the keys,
    labels and the source hash they were made with. Raises FileNotFoundError naming the
    first run that was never trained.
    """
    archive = Path(archive)
    keys = list(dict.fromkeys(config.key() for config in configs))
    runs = {}
    for key in keys:
        folder = Path(runs_dir) / "experiments" / key
        if not (folder / "result.json").is_file():
            raise FileNotFoundError(
                f"run {key} is not stored in {runs_dir}; train it first (run_many) and pack again."
            )
        runs[key] = read_result(folder / "result.json")["label"]
    manifest = {
        "format": "agkit runs",
        "version": CACHE_VERSION,
        "profile": profile,
        "source_hash": source_fingerprint(),
        "runs": runs,
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    temporary = archive.with_name(archive.name + ".tmp")
    try:
        with tarfile.open(temporary, "w:gz") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for key in keys:
                for name in RUN_FILES + OPTIONAL_RUN_FILES:
                    path = Path(runs_dir) / "experiments" / key / name
                    if name in RUN_FILES or path.is_file():
                        tar.add(path, f"experiments/{key}/{name}")
        temporary.replace(archive)
    except BaseException:  # a full disk, a run deleted meanwhile, Ctrl-C: no half archive
        temporary.unlink(missing_ok=True)
        raise
    return archive


def use_cache(archive_or_url, runs_dir="runs") -> dict:
    """Unpack runs packed by ``pack_runs`` (a file path or a URL) into ``runs_dir``.

    Runs already in ``runs_dir`` are kept. A run is reused only where its key matches, and
    keys hash the source of agkit and the mask files: runs packed from other source code
    are unpacked but never reused (the returned dict says how many match). Returns the
    manifest plus ``unpacked`` (runs added) and ``reusable`` (runs whose source matches).
    Raises ConnectionError with the URL when a download fails, ValueError when the
    archive is not one of ours.
    """
    source = str(archive_or_url)
    with tempfile.TemporaryDirectory() as scratch:
        if "://" in source:
            path = Path(scratch) / "runs.tar.gz"
            try:
                with urllib.request.urlopen(source, timeout=60) as response, open(path, "wb") as f:
                    shutil.copyfileobj(response, f)
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise ConnectionError(
                    f"could not download the runs archive {source} ({reason}). Without a "
                    f"network, copy the archive onto this machine and pass its path instead; "
                    f"or train the runs here (every notebook trains what it does not find)."
                ) from None
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"no runs archive at {path}; run `make cache` to build "
                    f"one or pass the archive's path or URL."
                )
        return _unpack(path, Path(runs_dir))


#: the largest size, in bytes, of each file of a run in an archive; larger entries (a
#: corrupt or hostile archive, a sparse file) are refused before anything is written.
#: A ResNet-18's weights take about 45 MB, the course's CPU models well under 1 MB.
MAX_RUN_FILE_BYTES = {
    "result.json": 1 << 20,
    "history.csv": 16 << 20,
    "model.pt": 256 << 20,
    "propagated.pt": 256 << 20,
}


def _unpack(archive: Path, runs_dir: Path) -> dict:
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as error:
        reason = str(error).splitlines()[0]
        raise ValueError(
            f"{archive} is not a runs archive made by `make cache` ({reason})."
        ) from None
    try:
        with tar:
            manifest, unpacked = _unpack_runs(tar, archive, runs_dir)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(
            f"{archive} is damaged ({error}): it may have been cut short while copying; copy "
            f"it again. Runs unpacked before the damage are complete; no half-written run "
            f"was left."
        ) from None
    manifest["unpacked"] = unpacked
    same_source = manifest.get("source_hash") == source_fingerprint()
    manifest["reusable"] = len(manifest["runs"]) if same_source else 0
    return manifest


def _read_manifest(tar: tarfile.TarFile, members: dict, archive: Path) -> dict:
    """The archive's manifest, checked: a regular JSON file listing runs by their keys."""
    entry = members.get(MANIFEST)
    if entry is None:
        raise ValueError(
            f"{archive} has no {MANIFEST}: it is not a runs archive made by `make cache`."
        )
    if not entry.isfile() or entry.size > MAX_RUN_FILE_BYTES["result.json"]:
        raise ValueError(
            f"{archive}: its {MANIFEST} is not a small regular file (a link, a folder or "
            f"{entry.size} bytes); make the archive again with `make cache`. Nothing was unpacked."
        )
    try:
        source = tar.extractfile(entry)
        assert source is not None  # checked to be a regular file above
        manifest = json.loads(source.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{archive}: its {MANIFEST} is not JSON ({error}); make the archive again with "
            f"`make cache`. Nothing was unpacked."
        ) from None
    runs = manifest.get("runs") if isinstance(manifest, dict) else None
    if not isinstance(runs, dict) or not all(re.fullmatch(r"[0-9a-f]{12}", k) for k in runs):
        raise ValueError(
            f"{archive}: {MANIFEST} does not list runs by their 12-digit keys; "
            f"nothing was unpacked."
        )
    return manifest


def _unpack_runs(tar: tarfile.TarFile, archive: Path, runs_dir: Path) -> tuple[dict, int]:
    """Check every entry of ``tar`` first, then unpack the runs not in ``runs_dir`` yet."""
    entries = tar.getmembers()  # reads the whole archive: a truncated one fails here
    members = {m.name: m for m in entries}
    if len(members) != len(entries):
        raise ValueError(f"{archive} lists an entry twice; nothing was unpacked.")
    manifest = _read_manifest(tar, members, archive)
    runs = manifest["runs"]
    wanted = {f"experiments/{key}/{name}": name for key in runs for name in RUN_FILES}
    optional = {f"experiments/{k}/{name}": name for k in runs for name in OPTIONAL_RUN_FILES}
    allowed = wanted | optional
    odd = [
        m.name
        for m in entries
        if m.name != MANIFEST and (m.name not in allowed or not m.isfile() or m.issparse())
    ]
    if odd:
        raise ValueError(
            f"{archive} holds entries a runs archive never has (first: "
            f"{odd[0]!r}); nothing was unpacked."
        )
    missing = sorted(set(wanted) - set(members))
    if missing:
        raise ValueError(
            f"{archive}: {MANIFEST} lists {len(runs)} runs but {len(missing)} of their files "
            f"are not in the archive (first: {missing[0]!r}); make it again with "
            f"`make cache`. Nothing was unpacked."
        )
    present = {n: f for n, f in allowed.items() if n in members}
    too_big = [n for n, f in present.items() if members[n].size > MAX_RUN_FILE_BYTES[f]]
    if too_big:
        name = too_big[0]
        raise ValueError(
            f"{archive}: {name} is {members[name].size / 2**20:.0f} MiB, more than a run's "
            f"{present[name]} can be ({MAX_RUN_FILE_BYTES[present[name]] / 2**20:.0f} MiB, "
            f"agkit.experiments.MAX_RUN_FILE_BYTES); nothing was unpacked."
        )
    unpacked = 0
    for key in runs:
        target = runs_dir / "experiments" / key
        if (target / "result.json").exists():
            continue
        staging = runs_dir / "experiments" / f".{key}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            names = [
                n for n in RUN_FILES + OPTIONAL_RUN_FILES if f"experiments/{key}/{n}" in members
            ]
            for name in names:  # staged, then renamed: a run appears only complete
                source = tar.extractfile(members[f"experiments/{key}/{name}"])
                assert source is not None  # every entry was checked to be a regular file
                with open(staging / name, "wb") as out:
                    shutil.copyfileobj(source, out)
            shutil.rmtree(target, ignore_errors=True)
            staging.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        unpacked += 1
    return manifest, unpacked
