"""Your own images: a folder with one subfolder per class.

    my_xrays/
      normal/     a.png  b.jpg  d.dcm ...
      fractured/  c.png ...
      masks/      (optional) a MaskStore folder, e.g. filled in with the annotation widget

Images are PNG, JPEG, BMP, TIFF or DICOM files (.dcm, .dicom, or a file of any name that
holds the DICOM "DICM" marker, as hospital exports often are; DICOM needs
``pip install "agkit[dicom]"``). Class names are the subfolder names, sorted, so
"fractured" is 0 and "normal" is 1 here; read ``ds.class_names`` rather than guessing.
Image ids are "<class>/<file stem>" (subfolders inside a class folder are kept in the id;
a DICOM file named 1.2.840.5 keeps its whole name). A folder in the kit's own format
(labels.csv with image_id, path, label columns, as ``SynthFrac.save`` writes) works too.

Splits: seeded and stratified by class with ``fractions``, or, for a labels.csv folder,
read from a column named by ``split_column``.

Symbolic links are never followed in a class-folder dataset: a linked class folder, a linked
subfolder or a linked image file is refused with a ValueError that names each link and where
it points. A link back into the dataset (``my_xrays/loop -> .``) would count its images
twice, under a wrong class; a link out of it would read images from outside the folder you
passed. Copy the files in instead (``cp -rL``), or remove the link. (Names starting with "."
are skipped, links among them too; so are top-level ones starting with "_", and ``masks``.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from agkit.data.dicom import DICOM_SUFFIXES, is_dicom
from agkit.data.mask_store import MaskStore
from agkit.data.real.source import DatasetInfo, FolderFiles, RealSource, read_csv
from agkit.data.real.splits import REAL_SPLITS, split_stratified

INFO = DatasetInfo("folder dataset", "your own collection", "Your own images")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", *DICOM_SUFFIXES}
MASKS = "masks"


def _class_folders(root: Path) -> pd.DataFrame:
    """One row per image under root/<class>/: image_id, label, key, class_name."""
    entries = [p for p in root.iterdir() if p.name != MASKS and not p.name.startswith((".", "_"))]
    links = [p for p in entries if p.is_symlink() and (p.is_dir() or not p.exists())]
    folders = sorted(p for p in entries if p.is_dir() and not p.is_symlink())
    images = {}
    for folder in folders:
        images[folder.name], inner = _images(folder)
        links += inner
    if links:
        raise _links_error(root, links)
    classes = [name for name, paths in images.items() if paths]  # empty folders are no class
    for name in classes:
        _check_unique_stems(root, images[name])
    rows = []
    for label, name in enumerate(classes):
        for path in images[name]:
            relative = path.relative_to(root)
            rows.append((_stem(relative).as_posix(), label, relative.as_posix(), name))
    return pd.DataFrame(rows, columns=["image_id", "label", "key", "class_name"])


def _check_unique_stems(root: Path, paths: list[Path]) -> None:
    """Two files differing only in their extension would become one image id."""
    seen: dict[Path, Path] = {}
    for path in paths:
        stem = _stem(path)
        if stem in seen:
            raise ValueError(
                f"{seen[stem].name} and {path.name} in {path.parent} share the name "
                f"{stem.name!r}, so both would be image {stem.relative_to(root).as_posix()!r}; "
                "rename or remove one of them (image ids are '<class>/<file name without "
                "extension>')."
            )
        seen[stem] = path


def read_labels_csv(folder) -> pd.DataFrame:
    """``folder/labels.csv`` checked: columns image_id, path, label (class numbers), one
    row per image, unique ids. Every problem is one ValueError naming the file and the fix.

    Other columns are kept (they end up in ``ds.meta``).
    """
    csv = Path(folder) / "labels.csv"
    layout = (
        "a header line image_id,path,label and one line per image, e.g. "
        "'img_001,images/img_001.png,1' (label = class number 0, 1, ...)"
    )
    try:
        table = read_csv(csv, dtype={"image_id": str, "path": str})
    except pd.errors.EmptyDataError:
        raise ValueError(f"{csv} is empty; it needs {layout}.") from None
    missing = [c for c in ("image_id", "path", "label") if c not in table.columns]
    if missing:
        raise ValueError(
            f"{csv} lacks the column(s) {missing} (it has {list(table.columns)}); "
            f"it needs {layout}."
        )
    if table.empty:
        raise ValueError(f"{csv} has a header but no rows; add {layout}.")
    labels = pd.to_numeric(table["label"], errors="coerce")
    bad = table.index[labels.isna() | (labels != labels.round()) | (labels < 0)]
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"{csv}: the label column must hold class numbers 0, 1, ..., but line {row + 2} has "
            f"{table['label'].iloc[row]!r}; write the class number there (a folder of class "
            "subfolders without labels.csv takes the class names from the folder names)."
        )
    table["label"] = labels.astype(int)
    blank = table.index[table["image_id"].isna() | table["path"].isna()]
    if len(blank):
        raise ValueError(
            f"{csv}: line {int(blank[0]) + 2} has no image_id or path; fill it in "
            "or remove the line."
        )
    duplicated = table["image_id"][table["image_id"].duplicated()]
    if len(duplicated):
        raise ValueError(
            f"{csv}: the image_id {duplicated.iloc[0]!r} appears more than once; "
            "give every image its own id."
        )
    return table


def _images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files under folder, symbolic links met there), without entering any link."""
    images, links = [], []
    for parent, dirs, files in os.walk(folder):  # os.walk lists links to folders, never enters
        here = Path(parent)
        links += [here / d for d in dirs if not d.startswith(".") and (here / d).is_symlink()]
        for name in files:
            path = here / name
            if name.startswith("."):
                continue
            if path.is_symlink():  # a link is named, never read (not even for a DICOM marker)
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    links.append(path)
            elif path.is_file() and _is_image(path):
                images.append(path)
    return sorted(images), sorted(links)


def _links_error(root: Path, links: list[Path]) -> ValueError:
    """One error naming the symbolic links in a class-folder dataset (see the docstring)."""
    inside = root.resolve()

    def where(link: Path) -> str:
        try:
            target = link.resolve()
        except (OSError, RuntimeError):  # a link to itself: Python 3.11 raises RuntimeError
            return f"{os.readlink(link)!r}, a loop"
        if target == inside or inside in target.parents:
            return f"{os.readlink(link)!r}, back inside the dataset"
        return f"{os.readlink(link)!r}, outside the dataset"

    shown = "; ".join(f"{link.relative_to(root)} -> {where(link)}" for link in links[:3])
    more = f" and {len(links) - 3} more" if len(links) > 3 else ""
    return ValueError(
        f"{root} holds {len(links)} symbolic link(s): {shown}{more}. load_folder does not "
        "follow links, so that no image is counted twice (under a wrong class) or read from "
        "outside the folder; copy the files in instead (e.g. cp -rL) or remove the link(s)."
    )


def _is_image(path: Path) -> bool:
    """An image extension, or a DICOM file by its marker (names like 1.2.840.113619.2.5)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        return is_dicom(handle)


def _stem(path: Path) -> Path:
    """The path without its image extension (a DICOM file named 1.2.840.5 keeps its name)."""
    return path.with_suffix("") if path.suffix.lower() in IMAGE_SUFFIXES else path


def load_folder(
    root, *, fractions=(0.7, 0.15, 0.15), split_column: str | None = None, seed: int = 0
) -> RealSource:
    """Open a folder of class subfolders (or a labels.csv folder). See the module docstring.

    fractions: (train, val, test) shares of the seeded split, stratified by class.
    split_column: a labels.csv column whose values ("train", "val", "test") give the split
        instead (e.g. "split"); a "split" column that is not used is kept as "given_split".
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"the folder {root} does not exist; pass a folder with one subfolder "
            "of images per class (see data/README.md, section 'Your own images')."
        )
    if (root / "labels.csv").is_file():
        table = read_labels_csv(root).rename(columns={"path": "key"})
        class_names = [str(c) for c in range(int(table["label"].max()) + 1)]
    else:
        table = _class_folders(root)
        if table.empty:
            raise FileNotFoundError(
                f"no images found in class subfolders of {root}; expected files like "
                f"{root}/<class name>/<image>.png (see data/README.md, section 'Your own images')."
            )
        class_names = list(table.drop_duplicates("label").sort_values("label")["class_name"])
    if split_column is None:
        table = table.rename(columns={"split": "given_split"})
        table["split"] = split_stratified(table["label"], fractions, seed)
    elif split_column not in table or not table[split_column].isin(REAL_SPLITS).all():
        raise ValueError(
            f"split_column={split_column!r} must name a labels.csv column holding only "
            f"{', '.join(REAL_SPLITS)}; leave it out for a seeded split."
        )
    else:
        table["split"] = table[split_column]
    masks = MaskStore(root / MASKS) if (root / MASKS).is_dir() else None
    return RealSource(INFO, table, FolderFiles(root), masks, class_names, in_channels=1)
