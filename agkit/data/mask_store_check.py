"""Checking a MaskStore against its dataset, and rebuilding index.json from the PNGs.

``MaskStore.check`` compares the store with the dataset's image ids and shapes and returns a
``MaskStoreReport``; ``MaskStore.rebuild_index`` writes a new index.json from the ids and
provenance the PNGs carry (an existing one is kept as a backup). ``MaskStoreChecks`` is the
part of ``MaskStore`` that does this.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from agkit.data.mask_exchange import shape_of
from agkit.data.mask_store_index import INDEX_NAME, _atomic_write
from agkit.data.mask_store_png import CorruptMaskError, _read_png

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MaskStoreReport"]


@dataclass
class MaskStoreReport:
    """Result of `MaskStore.check`: lists of image ids (or file names) with problems."""

    orphans: list[str] = field(default_factory=list)  # masks for ids not in the given image list
    unannotated: list[str] = field(default_factory=list)  # given image ids without a mask
    missing_files: list[str] = field(default_factory=list)  # indexed ids whose PNG is gone
    corrupt: list[str] = field(default_factory=list)  # indexed ids whose PNG cannot be read
    wrong_shape: list[str] = field(
        default_factory=list
    )  # ids whose mask shape differs from image_shapes
    unindexed_files: list[str] = field(default_factory=list)  # PNG files the index does not know
    temp_files: list[str] = field(
        default_factory=list
    )  # left by interrupted writes; safe to delete

    @property
    def ok(self) -> bool:
        """True when nothing needs fixing (unannotated images are normal and do not count)."""
        return not (
            self.orphans
            or self.missing_files
            or self.corrupt
            or self.wrong_shape
            or self.unindexed_files
        )

    def __str__(self) -> str:
        fixes = {
            "orphans": "masks for images not in the dataset: check the ids or store.delete(id)",
            "missing_files": "indexed but PNG missing: store.delete(id) and re-annotate",
            "corrupt": "unreadable PNG: store.delete(id) and re-annotate",
            "wrong_shape": "mask size differs from the image: store.delete(id) and re-annotate",
            "unindexed_files": (
                "PNG files not in index.json: MaskStore.rebuild_index(folder) adds them"
            ),
        }
        lines = [f"{len(self.unannotated)} image(s) without a mask."]
        for name, fix in fixes.items():
            items = getattr(self, name)
            if items:
                shown = ", ".join(map(repr, items[:5])) + (" ..." if len(items) > 5 else "")
                lines.append(f"{len(items)} {name} ({fix}): {shown}")
        if self.temp_files:
            lines.append(
                f"{len(self.temp_files)} temporary file(s) left by interrupted writes "
                "(safe to delete)."
            )
        return "\n".join(lines) if not self.ok else " ".join(lines) + " No problems."


class MaskStoreChecks:
    """The consistency side of a MaskStore: ``check`` and the rebuilding of index.json."""

    if TYPE_CHECKING:  # provided by MaskStore and MaskStoreIndex
        folder: Path
        _masks: dict[str, dict]

        def _refresh(self, force: bool = False) -> None: ...
        def _file(self, image_id: str, entry: dict) -> Path: ...
        def _png_files(self) -> Iterator[Path]: ...
        def get(self, image_id: str) -> np.ndarray | None: ...

    # ---- consistency
    def check(
        self, image_ids: Iterable[str] | None = None, *, image_shapes=None, verify: bool = True
    ) -> MaskStoreReport:
        """Compare the store with the dataset's image ids (and optionally their shapes).

        image_shapes: dict image_id -> (H, W) or callable; masks of another size are reported.
        verify: load every PNG to find corrupt files (about 0.1 ms per small mask).
        """
        self._refresh()
        report = MaskStoreReport()
        if image_ids is not None:
            wanted = set(image_ids)
            report.orphans = sorted(set(self._masks) - wanted)
            report.unannotated = sorted(wanted - set(self._masks))
        for image_id, entry in sorted(self._masks.items()):
            path = self._file(image_id, entry)
            if not path.exists():
                report.missing_files.append(image_id)
                continue
            if verify:
                try:
                    self.get(image_id)
                except (CorruptMaskError, OSError):
                    report.corrupt.append(image_id)
                    continue
            if image_shapes is not None:
                shape = shape_of(image_shapes, image_id)
                if shape is not None and tuple(entry.get("shape", ())) != tuple(shape):
                    report.wrong_shape.append(image_id)
        known = {entry["file"] for entry in self._masks.values()}
        report.unindexed_files = sorted(p.name for p in self._png_files() if p.name not in known)
        report.temp_files = sorted(p.name for p in self.folder.glob(".*.tmp"))
        return report

    @staticmethod
    def _rebuild(folder: Path, durable: bool) -> None:
        index_path = folder / INDEX_NAME
        if index_path.exists():
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            os.replace(index_path, folder / f"{INDEX_NAME}.bak-{stamp}")
        masks: dict[str, dict] = {}
        mtimes: dict[str, int] = {}
        skipped = []
        for path in sorted(p for p in folder.glob("*.png") if not p.name.startswith(".")):
            if path.is_symlink() or not path.is_file():
                skipped.append(path.name)  # never read through a link: it may point anywhere
                continue
            try:
                mask, image_id, prov = _read_png(path, "")
            except CorruptMaskError:
                skipped.append(path.name)
                continue
            if image_id is None:
                image_id, prov = (
                    path.stem,
                    {"source": "imported", "tool": "rebuild_index (no metadata in PNG)"},
                )
            mtime = path.stat().st_mtime_ns
            if image_id in masks and mtimes[image_id] >= mtime:
                continue  # two files claim one id: keep the newer
            prov = {**prov, "file": path.name, "shape": [int(mask.shape[0]), int(mask.shape[1])]}
            prov.setdefault(
                "time",
                datetime.fromtimestamp(mtime / 1e9, timezone.utc).isoformat(timespec="seconds"),
            )
            masks[image_id], mtimes[image_id] = prov, mtime
        if skipped:
            warnings.warn(
                f"rebuild_index skipped {len(skipped)} unreadable PNG(s) or links, left in "
                f"place: {skipped[:5]}",
                stacklevel=3,
            )
        data = {"format": "agkit MaskStore", "version": 1, "masks": dict(sorted(masks.items()))}
        _atomic_write(index_path, json.dumps(data, indent=1).encode("utf-8"), durable)
