"""index.json of a MaskStore folder: reading it, locking it, and changing it atomically.

index.json maps image id -> provenance (file name, source, tool, UTC time, shape [H, W]).
The file name is always a plain name inside the folder; an index that names anything
else (``../x.png``, an absolute path, a symbolic link) is refused with CorruptIndexError,
so the store never reads, writes or deletes outside its folder.

Every write is atomic: the bytes go to a temporary file in the same folder, which is flushed,
fsync'ed and then renamed over the target with `os.replace`.  A killed kernel therefore leaves
either the old or the new file, never half of one.  `put` writes the PNG first and the index
second; if the process dies between the two, the index still describes the previous state
(a new PNG is simply not indexed yet, and `rebuild_index` can pick it up).  If writing the
index fails (a full disk, a read-only folder), the change is taken back: every PNG the change
wrote is returned to its previous bytes (or removed when it is new; the previous file was kept
as a hard link, which needs no disk space), the store object forgets the change, and an OSError
says that nothing was changed.

Several writers (two kernels, a widget and a script) may share one store: every change holds
a lock file (``.index.json.lock``, via the `filelock` package) while it re-reads index.json,
applies its one change and writes the index back, so no writer loses another's mask or
brings back one that another deleted.

``MaskStoreIndex`` is the part of ``MaskStore`` that does this; ``MaskStore.__init__`` sets
the attributes it uses (folder, durable, _index_path, _lock, _masks, _seen, _batch_depth,
_undo).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

__all__ = ["CorruptIndexError", "INDEX_NAME", "LOCK_NAME", "MaskStoreIndex"]

INDEX_NAME = "index.json"
LOCK_NAME = ".index.json.lock"  # hidden: not a mask, not a temporary file


class CorruptIndexError(ValueError):
    """index.json cannot be read; the file is left untouched."""


def _atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see either the old or the new file, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _set_aside(path: Path) -> Path | bytes | None:
    """Keep what `_put_back` needs to return `path` to its current state.

    None when there is no file; else a hard link to it (a second name for the same bytes, so it
    costs no disk space and works on a full disk) or, on file systems without hard links, its
    bytes. The link's name ends in ".tmp": `check` reports one left by a killed process.
    """
    if not path.exists():
        return None
    link = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.bak.tmp")
    try:
        os.link(path, link)
        return link
    except OSError:
        return path.read_bytes()


def _put_back(path: Path, saved: Path | bytes | None, durable: bool) -> None:
    """Return `path` to the state `_set_aside` kept (renames need no disk space)."""
    if saved is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    elif isinstance(saved, Path):
        os.replace(saved, path)
    else:
        _atomic_write(path, saved, durable)


_LOCKS: dict[str, FileLock] = {}


def _lock_for(folder: Path) -> FileLock:
    """The one lock object of a store folder in this process (re-entrant), shared by every
    MaskStore on that folder so two objects in one process do not wait for each other."""
    key = os.path.realpath(folder)
    if key not in _LOCKS:
        _LOCKS[key] = FileLock(os.path.join(key, LOCK_NAME))
    return _LOCKS[key]


@contextlib.contextmanager
def _locked(lock: FileLock):
    """Hold `lock`, checking every 2 ms while another process has it (filelock's default
    50 ms would dominate a burst of small writes)."""
    lock.acquire(poll_interval=0.002)
    try:
        yield
    finally:
        lock.release()


def _file_problem(folder: Path, name: str) -> str | None:
    """Why an index entry's file name is unsafe to use, or None for a plain name in folder."""
    if not name or name in (".", "..") or os.path.basename(name) != name or "\\" in name:
        return "which is not a plain file name (no folders, no '..')"
    if os.path.isabs(name):
        return "which is an absolute path"
    path = folder / name
    if path.is_symlink():
        return "which is a symbolic link (it may point outside the folder)"
    if path.exists() and not path.is_file():
        return "which is not a regular file"
    return None


class MaskStoreIndex:
    """The index.json side of a MaskStore: the newest index in memory, every change under the
    folder's lock, index and PNGs written atomically, a failed index write taken back."""

    # Set by MaskStore.__init__ (declared here for the type checker; no class attributes).
    folder: Path
    durable: bool
    _index_path: Path
    _lock: FileLock
    _masks: dict[str, dict]
    _seen: tuple[int, int, int] | None  # (inode, mtime, size) of index.json when last seen
    _batch_depth: int
    _undo: list[tuple[Path, Path | bytes | None]]

    # ---- index file
    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._index_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self, force: bool = False) -> None:
        """Re-read index.json when another MaskStore object (or process) changed it."""
        if self._batch_depth:
            return  # inside a batch this object holds the lock and the newest index
        stat = self._stat()
        if stat == self._seen and not force:
            return
        self._masks = {} if stat is None else self._read_index(self._index_path)
        self._seen = stat

    @staticmethod
    def _read_index(path: Path) -> dict[str, dict]:
        fix = (
            f"The file is left untouched; run MaskStore.rebuild_index({str(path.parent)!r}) "
            "to rebuild it from the mask PNGs in the folder (the bad file is kept as a "
            "backup; nothing is deleted)."
        )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptIndexError(f"Mask index {path} is not valid JSON ({e}). {fix}") from e
        masks = data.get("masks") if isinstance(data, dict) else None
        if not isinstance(masks, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("file"), str) for v in masks.values()
        ):
            raise CorruptIndexError(
                f"Mask index {path} does not have the expected "
                f"{{'masks': {{id: {{'file': ...}}}}}} layout. {fix}"
            )
        for image_id, entry in masks.items():
            problem = _file_problem(path.parent, entry["file"])
            if problem:
                raise CorruptIndexError(
                    f"Mask index {path}: the entry for image {image_id!r} "
                    f"names the file {entry['file']!r}, {problem}; a mask file "
                    f"must be a plain file name inside the folder. {fix}"
                )
        return masks

    def _write_index(self) -> None:
        if self._batch_depth:
            return
        data = {
            "format": "agkit MaskStore",
            "version": 1,
            "masks": dict(sorted(self._masks.items())),
        }
        _atomic_write(self._index_path, json.dumps(data, indent=1).encode("utf-8"), self.durable)
        self._seen = self._stat()

    @contextlib.contextmanager
    def _writing(self):
        """Hold the store's lock with the newest index loaded; write the index at the end.

        Every change runs inside this block, so changes by other objects and processes are
        merged, never overwritten. Inside a batch the lock is already held.
        """
        with _locked(self._lock):
            if self._batch_depth:
                yield
                return
            self._refresh(force=True)
            before, self._undo = dict(self._masks), []
            self._batch_depth += 1
            try:
                yield
            finally:  # also after an error: the PNGs written so far are indexed
                self._batch_depth -= 1
                self._commit(before)

    def _replace_png(self, path: Path, data: bytes) -> None:
        """Write a mask PNG inside `_writing`, remembering how to take it back (see _commit)."""
        self._undo.append((path, _set_aside(path)))
        try:
            _atomic_write(path, data, self.durable)
        except BaseException:
            _, saved = self._undo.pop()  # the file itself is unchanged: drop the spare link
            if isinstance(saved, Path):
                saved.unlink(missing_ok=True)
            raise

    def _commit(self, before: dict[str, dict]) -> None:
        """Write index.json; if that fails, return the PNGs and this object to `before`.

        Without this a failed index write would leave new PNG bytes on disk and an entry in
        memory that index.json lacks, while the caller is told the mask was not saved.
        """
        undo, self._undo = self._undo, []
        try:
            self._write_index()
        except BaseException as err:
            self._masks = before
            stuck = []
            for path, saved in reversed(undo):
                try:
                    _put_back(path, saved, self.durable)
                except OSError as e:
                    stuck.append(f"{path.name} ({e})")
            if not isinstance(err, OSError):
                raise
            failed = f"Could not write the mask index {self._index_path} ({err.strerror or err})"
            if stuck:
                raise OSError(
                    err.errno,
                    f"{failed}, and {len(stuck)} mask file(s) could not be put back: "
                    f"{stuck[:3]}. The index still lists the previous masks; once there is "
                    f"room, run MaskStore.rebuild_index({str(self.folder)!r}) to index the "
                    "PNGs as they are.",
                ) from err
            raise OSError(
                err.errno,
                f"{failed}; nothing was changed: the mask files and the index are as they "
                "were. Free some disk space (or make the folder writable) and save again.",
            ) from err
        for _, saved in undo:
            if isinstance(saved, Path):
                with contextlib.suppress(FileNotFoundError):
                    saved.unlink()

    @contextlib.contextmanager
    def batch(self):
        """Write index.json once at the end instead of after every put/delete (bulk imports).

        The store's lock is held for the whole block, so other writers wait. PNGs are still
        written atomically one by one; if the process dies inside the block the new PNGs are
        on disk but not indexed (rebuild_index recovers them).
        """
        with self._writing():
            yield self

    def _png_files(self) -> Iterator[Path]:
        return (
            p
            for p in self.folder.glob("*.png")
            if not p.name.startswith(".") and not p.is_symlink()
        )

    def _file(self, image_id: str, entry: dict) -> Path:
        """The PNG path of an index entry, checked to be a plain file inside the folder."""
        problem = _file_problem(self.folder, entry["file"])
        if problem:
            raise CorruptIndexError(
                f"Mask index {self._index_path}: the entry for image {image_id!r} names the file "
                f"{entry['file']!r}, {problem}; run MaskStore.rebuild_index({str(self.folder)!r}) "
                "to rebuild the index from the PNGs in the folder (nothing is deleted)."
            )
        return self.folder / entry["file"]
