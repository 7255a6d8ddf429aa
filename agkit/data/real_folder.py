"""Your own images: a folder with one subfolder per class.

    my_xrays/
      normal/     a.png  b.jpg ...
      fractured/  c.png ...
      masks/      (optional) a MaskStore folder, e.g. filled in with the annotation widget

Class names are the subfolder names, sorted, so "fractured" is 0 and "normal" is 1 here;
read ``ds.class_names`` rather than guessing. Image ids are "<class>/<file stem>"
(subfolders inside a class folder are kept in the id). A folder in the kit's own format
(labels.csv with image_id, path, label columns, as ``SynthFrac.save`` writes) works too.

Splits: seeded and stratified by class with ``fractions``, or, for a labels.csv folder,
read from a column named by ``split_column``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agkit.data.real_io import DatasetInfo, FolderFiles, RealSource, read_csv
from agkit.data.real_splits import SPLITS, split_stratified

INFO = DatasetInfo("folder dataset", "your own collection", "Your own images")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MASKS = "masks"


def _class_folders(root: Path) -> pd.DataFrame:
    """One row per image under root/<class>/: image_id, label, key, class_name."""
    folders = sorted(p for p in root.iterdir()
                     if p.is_dir() and p.name != MASKS and not p.name.startswith((".", "_")))
    images = {folder.name: _images(folder) for folder in folders}
    classes = [name for name, paths in images.items() if paths]  # empty folders are no class
    rows = []
    for label, name in enumerate(classes):
        for path in images[name]:
            relative = path.relative_to(root)
            rows.append((relative.with_suffix("").as_posix(), label, relative.as_posix(), name))
    return pd.DataFrame(rows, columns=["image_id", "label", "key", "class_name"])


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def load_folder(root, *, fractions=(0.7, 0.15, 0.15), split_column: str | None = None,
                seed: int = 0) -> RealSource:
    """Open a folder of class subfolders (or a labels.csv folder). See the module docstring.

    fractions: (train, val, test) shares of the seeded split, stratified by class.
    split_column: a labels.csv column whose values ("train", "val", "test") give the split
        instead (e.g. "split"); a "split" column that is not used is kept as "given_split".
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"the folder {root} does not exist; pass a folder with one subfolder "
                                "of images per class (see data/README.md, section 'Your own images').")
    if (root / "labels.csv").is_file():
        table = read_csv(root / "labels.csv", dtype={"image_id": str, "path": str})
        table = table.rename(columns={"path": "key"})
        table["label"] = table["label"].astype(int)
        class_names = [str(c) for c in range(int(table["label"].max()) + 1)]
    else:
        table = _class_folders(root)
        if table.empty:
            raise FileNotFoundError(
                f"no images found in class subfolders of {root}; expected files like "
                f"{root}/<class name>/<image>.png (see data/README.md, section 'Your own images').")
        class_names = list(table.drop_duplicates("label").sort_values("label")["class_name"])
    if split_column is None:
        table = table.rename(columns={"split": "given_split"})
        table["split"] = split_stratified(table["label"], fractions, seed)
    elif split_column not in table or not table[split_column].isin(SPLITS).all():
        raise ValueError(f"split_column={split_column!r} must name a labels.csv column holding only "
                         f"{', '.join(SPLITS)}; leave it out for a seeded split.")
    else:
        table["split"] = table[split_column]
    masks = None
    if (root / MASKS).is_dir():
        from agkit.data.masks import MaskStore

        masks = MaskStore(root / MASKS)
    return RealSource(INFO, table, FolderFiles(root), masks, class_names, channels=1)
