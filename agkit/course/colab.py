"""Running the course on Google Colab (and knowing when we are not).

Colab opens every notebook in a fresh runtime with its own pinned Jupyter stack, so the kit:

* installs itself alone, from one repository and ref (``agkit.course.stamp``: ``make stamp``
  writes them into every notebook's Colab badge and install cell);
* finds a runs folder that is valid wherever a notebook starts (``default_runs_dir``);
* turns on Colab's widget manager so that third-party widgets can load
  (``enable_widget_manager``);
* carries the masks drawn in notebook 2 to a notebook running in another runtime
  (``require_masks``, ``download_masks``, ``upload_masks``), or keeps them on Google Drive.

Everything here is a no-op or a plain local path outside Colab, so notebooks call it freely.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import platformdirs

COLAB_RUNS_DIR = Path("/content/agkit-runs")
DRIVE_MOUNT = Path("/content/drive")
DRIVE_RUNS_DIR = DRIVE_MOUNT / "MyDrive" / "agkit-runs"


# ---------------------------------------------------------------------------------------
# where we are


def in_colab() -> bool:
    """True inside a Colab runtime (whose kernel imports ``google.colab`` at start)."""
    return "google.colab" in sys.modules


def enable_widget_manager() -> bool:
    """Let Colab load third-party widgets; returns True when it did, False elsewhere.

    Colab's front end only renders its built-in widgets until the custom widget manager is
    enabled; JupyterLab, Notebook 7 and VS Code need nothing, so this is a no-op there.
    """
    if not in_colab():
        return False
    from google.colab import output

    output.enable_custom_widget_manager()
    return True


def source_checkout() -> Path | None:
    """The repository folder when agkit is imported from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    is_checkout = (
        pyproject.is_file()
        and (root / "notebooks").is_dir()
        and re.search(r'(?m)^name\s*=\s*"agkit"', pyproject.read_text(encoding="utf-8"))
    )
    return root if is_checkout else None


def default_runs_dir(drive: bool = False) -> Path:
    """An absolute folder for trained models and results, valid in any working directory.

    * Colab: ``/content/agkit-runs`` (lost when the runtime ends), or with ``drive=True``
      ``MyDrive/agkit-runs`` on Google Drive (mounted here; Colab asks for permission), so
      that every notebook, in any runtime, sees the same runs and masks;
    * a source checkout (``git clone``, ``pip install -e .``, Binder): its ``runs/`` folder;
    * an installed package: the per-user cache folder (``~/.cache/agkit/runs`` on Linux).
    """
    if in_colab():
        if not drive:
            return COLAB_RUNS_DIR
        from google.colab import drive as google_drive

        google_drive.mount(str(DRIVE_MOUNT))
        return DRIVE_RUNS_DIR
    if drive:
        raise ValueError(
            "drive=True keeps runs on Google Drive and only works on Colab; "
            "elsewhere pass runs_dir= a folder of your choice."
        )
    checkout = source_checkout()
    if checkout is not None:
        return checkout / "runs"
    return platformdirs.user_cache_path("agkit") / "runs"


# ---------------------------------------------------------------------------------------
# masks drawn in another runtime


class MissingMasksError(FileNotFoundError):
    """No drawn masks where a notebook looked for them."""


def require_masks(folder):
    """Open the MaskStore in ``folder``; a clear error if it holds no masks.

    Returns an ``agkit.data.MaskStore`` with at least one mask. Does not create ``folder``.
    """
    from agkit.data import MaskStore

    folder = Path(folder)
    has_index = (folder / "index.json").is_file()
    store = MaskStore(folder) if has_index else None
    if store is not None and len(store):
        return store
    where = folder.resolve()
    state = "empty index" if has_index else "no index.json"
    lines = [f"No drawn masks in {where} ({state}). Notebook 2 saves the masks you draw there."]
    if in_colab():
        lines.append(
            "On Colab every notebook opens in a fresh runtime, so masks drawn in another "
            "runtime are not here. Either run notebook 2 with runs_dir on Google Drive "
            "(agkit.course.colab.default_runs_dir(drive=True)) and use the same runs_dir here, or "
            "run agkit.course.colab.download_masks(folder) where you drew them and "
            f"agkit.course.colab.upload_masks({str(folder)!r}) here."
        )
    else:
        lines.append(
            "Run notebook 2 with the same runs_dir, profile and seed first, or copy "
            "the folder (agkit.course.colab.download_masks / upload_masks zip it)."
        )
    lines.append('To train with the built-in masks instead, set masks = "builtin".')
    raise MissingMasksError(" ".join(lines))


def download_masks(folder, archive=None) -> Path:
    """Zip a MaskStore folder (index.json and the mask PNGs); on Colab also download it.

    Returns the path of the zip file (by default ``<folder>.zip`` next to the folder).
    """
    store = require_masks(folder)
    archive = Path(archive) if archive is not None else store.folder.with_suffix(".zip")
    names = ["index.json"] + sorted(store.provenance(i)["file"] for i in store.annotated_ids())
    partial = archive.with_name(f".{archive.name}.tmp")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                zf.write(store.folder / name, arcname=name)
        partial.replace(archive)
    except BaseException:  # a full disk or a mask deleted meanwhile: no half zip is left
        partial.unlink(missing_ok=True)
        raise
    if in_colab():
        from google.colab import files

        files.download(str(archive))
    print(f"{len(store)} masks from {store.folder} in {archive}")
    return archive


#: the largest mask zip that ``upload_masks`` unpacks, in bytes once unpacked (a drawn mask
#: is a PNG of a few kB; a larger zip is damaged, or a zip bomb)
MAX_MASK_ZIP_BYTES = 1 << 30


def _mask_members(zf: zipfile.ZipFile, shown: str) -> tuple[list[str], list[str]]:
    """The entries of a mask zip to unpack (index.json and the PNGs) and those left out.

    Raises ValueError, naming the zip ``shown``, for paths outside one folder, an entry
    listed twice, no index.json, or more than MAX_MASK_ZIP_BYTES once unpacked.
    """
    infos = [info for info in zf.infolist() if not info.is_dir()]
    names = [info.filename for info in infos]
    bad = [
        n for n in names if Path(n).is_absolute() or ".." in Path(n).parts or "/" in n or "\\" in n
    ]
    if bad:
        raise ValueError(
            f"{shown} holds paths outside a mask folder ({bad[:3]}); "
            "make it with agkit.course.colab.download_masks."
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"{shown} holds {twice[0]!r} more than once, so it is not clear which one to use; "
            "make the zip again with agkit.course.colab.download_masks. Nothing was unpacked."
        )
    if "index.json" not in names:
        raise ValueError(
            f"{shown} has no index.json at its top level, so it is not a "
            "MaskStore folder; make it with agkit.course.colab.download_masks."
        )
    size = sum(info.file_size for info in infos)
    if size > MAX_MASK_ZIP_BYTES:
        raise ValueError(
            f"{shown} would unpack to {size / 2**20:.0f} MiB, more than a mask folder can be "
            f"({MAX_MASK_ZIP_BYTES / 2**20:.0f} MiB); nothing was unpacked."
        )
    wanted = [n for n in names if n == "index.json" or n.lower().endswith(".png")]
    return wanted, [n for n in names if n not in wanted]


def _aside_name(folder: Path) -> Path:
    """A new name beside ``folder`` for the copy that an upload replaces."""
    stem = f"{folder.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, n = folder.with_name(stem), 1
    while aside.exists():  # two uploads in one second
        n += 1
        aside = folder.with_name(f"{stem}-{n}")
    return aside


def _unpack_masks(archive: Path, shown: str, staging: Path) -> list[str]:
    """Unpack the mask zip ``archive`` into the empty folder ``staging`` and check it as a
    MaskStore; returns the names left out (files that are not masks of its index)."""
    from agkit.data.mask_store import MaskStore
    from agkit.data.mask_store_index import CorruptIndexError
    from agkit.data.mask_store_png import CorruptMaskError

    try:
        with zipfile.ZipFile(archive) as zf:
            wanted, left_out = _mask_members(zf, shown)
            zf.extractall(staging, members=wanted)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(
            f"{shown} is not a zip file made by agkit.course.colab.download_masks ({error})."
        ) from None
    try:
        store = MaskStore(staging)
        report = store.check()
    except (CorruptIndexError, CorruptMaskError) as error:
        message = str(error).replace(str(staging), shown)
        raise ValueError(f"The masks in {shown} are damaged: {message}") from None
    if report.missing_files or report.corrupt:
        raise ValueError(f"The masks in {shown} are damaged: {report}")
    for name in report.unindexed_files:  # PNGs that index.json does not list
        (staging / name).unlink()
    return left_out + list(report.unindexed_files)


def upload_masks(folder, archive=None, *, overwrite: bool = False):
    """Unpack a zip made by ``download_masks`` into ``folder``; returns the MaskStore.

    archive: the zip's path; on Colab leave it out to pick the file in the browser.
    A folder that already holds masks is kept: pass ``overwrite=True`` to replace it. A folder
    that holds any file is renamed to ``<folder>.replaced-<time>``, never deleted. Only
    index.json and the PNGs it lists are unpacked; anything else in the zip is left out
    (and named).
    """
    from agkit.data import MaskStore

    folder = Path(folder)
    existing = (folder / "index.json").is_file() and len(MaskStore(folder))
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {existing} masks; pass overwrite=True to "
            "replace them (the old folder is kept under another name)."
        )
    with tempfile.TemporaryDirectory() as tmp:
        if archive is None:
            if not in_colab():
                raise ValueError(
                    "Outside Colab pass archive= the zip file made by "
                    "agkit.course.colab.download_masks."
                )
            from google.colab import files

            uploaded = files.upload()
            zips = [name for name in uploaded if name.endswith(".zip")]
            if len(zips) != 1:
                raise ValueError(
                    f"Upload one .zip file made by download_masks; got {list(uploaded)}."
                )
            archive, shown = Path(tmp) / "masks.zip", zips[0]
            archive.write_bytes(uploaded[zips[0]])
        else:
            archive = Path(archive)
            shown = str(archive)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            left_out = _unpack_masks(archive, shown, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if folder.exists() and any(folder.iterdir()):
        folder.rename(_aside_name(folder))
    elif folder.exists():
        folder.rmdir()
    staging.rename(folder)
    store = MaskStore(folder)
    print(f"{len(store)} masks in {folder}")
    if left_out:
        print(f"Left out {len(left_out)} file(s) of {shown} that are not its masks: {left_out[:5]}")
    return store
