"""Demo copies of the real datasets, drawn with SynthFrac, in exactly their on-disk format.

The real collections (FracAtlas, GRAZPEDWRI-DX, MURA) take a download, some a
registration. ``write_demo_dataset`` writes a small stand-in that ``open_dataset``
reads exactly as it reads the real thing: same folders, same file and column names, same
annotation formats. The pictures are SynthFrac radiographs (larger than the course's
64 px ones), so the labels and masks are known exactly. Notebook 5 uses it when no real
dataset is at hand, which also keeps the real-format code path running in CI.

    root = write_demo_dataset("fracatlas", "runs/data/demo-fracatlas")
    train = open_dataset("fracatlas", root, "train")

Image k of the demo is image k of ``demo_synthfrac(n, size, seed)``; the file
``demo_source.csv`` next to the data maps every image id that ``open_dataset`` reports
to its SynthFrac image (``synthfrac_id``) and repeats its label, marker and fracture type.
It is the only file a real download does not have; the loaders ignore it.

What each format gets:

==========  ===========================================================================
fracatlas   dataset.csv (the real 13 columns), images/Fractured|Non_fractured/*.jpg,
            COCO polygons of the fracture outlines (one per connected region), YOLO and
            Pascal VOC boxes, published split lists for the fractured images (70/15/15 %)
grazpedwri  dataset.csv (flags 1 or blank), images_part1/*.png, YOLO boxes of class 3
            (fracture); about two images per patient
mura        MURA-v1.1/ path and study-label CSVs (no header) and the PNG tree; studies of
            one to three images with one label; no masks (MURA has none)
folder      <root>/negative/*.png and <root>/positive/*.png ("negative" sorts first, so
            label 1 = fractured as elsewhere) and a MaskStore of fracture masks in masks/
==========  ===========================================================================

Writing is atomic: the files go to a temporary folder that replaces ``folder`` at the
end, so an interrupted write never leaves half a dataset. Asking again with the same
arguments returns at once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from agkit.data.real.demo_formats import (
    write_folder,
    write_fracatlas,
    write_grazpedwri,
    write_mura,
)
from agkit.data.synthetic import SynthFrac, make_synthfrac

DEMO_FORMATS = ("fracatlas", "grazpedwri", "mura", "folder")
DEMO_VERSION = 2  # bump when the written files change, so old demo folders are rewritten
MARKER_FILE = "demo.json"
SOURCE_FILE = "demo_source.csv"


def demo_synthfrac(n: int = 240, size: int = 128, seed: int = 0, **params) -> SynthFrac:
    """The SynthFrac images behind a demo dataset (the "train" stream of ``seed``).

    n images of size x size pixels; ``params`` go to make_synthfrac (e.g.
    shortcut_strength, subtlety). The demo's image k is this SynthFrac's image k.
    """
    return make_synthfrac(n, size=size, seed=seed, split="train", **params)


def write_demo_dataset(
    name: str, folder, n: int = 240, size: int = 128, seed: int = 0, **params
) -> Path:
    """Write a small demo of a real dataset's on-disk format and return its root folder.

    Args:
        name: "fracatlas", "grazpedwri", "mura" or "folder" (see the module docstring).
        folder: where to write; created, or replaced when it holds an older demo.
        n: number of images (at least 20, so that every split gets both classes).
        size: side of the square radiographs in pixels (32..256).
        seed: seeds the images and every choice made while writing.
        **params: passed to make_synthfrac (shortcut_strength, subtlety, noise, ...).

    Returns:
        the path to pass to ``open_dataset(name, path, split)``; it holds demo_source.csv
        (columns image_id, synthfrac_id, label, marker, fracture_type).

    Raises:
        ValueError for an unknown name or too small n; FileExistsError when ``folder``
        holds files that are not a demo dataset (nothing is overwritten then).
    """
    key = str(name).lower()
    if key not in DEMO_FORMATS:
        hint = " (CUB needs the real download, see data/README.md)" if key == "cub" else ""
        raise ValueError(f"no demo for {name!r}{hint}; choose one of {', '.join(DEMO_FORMATS)}.")
    if not isinstance(n, (int, np.integer)) or n < 20:
        raise ValueError(f"n must be a whole number of at least 20 images, got {n!r}.")
    folder = Path(folder).expanduser()
    wanted = {
        "version": DEMO_VERSION,
        "format": key,
        "n": int(n),
        "size": int(size),
        "seed": int(seed),
        "params": {k: params[k] for k in sorted(params)},
    }
    marker = folder / MARKER_FILE
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return folder
    if folder.exists() and any(folder.iterdir()) and not marker.is_file():
        raise FileExistsError(
            f"{folder} already holds files that are not a demo dataset; "
            "pass an empty or new folder so that nothing of yours is overwritten."
        )

    source = demo_synthfrac(n, size, seed, **params)
    temporary = folder.with_name(f".{folder.name}.writing-{os.getpid()}")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, DEMO_FORMATS.index(key)]))
    ids = WRITERS[key](source, temporary, rng)
    table = source.meta[["image_id", "label", "marker", "fracture_type"]].rename(
        columns={"image_id": "synthfrac_id"}
    )
    table.insert(0, "image_id", ids)
    table.to_csv(temporary / SOURCE_FILE, index=False)
    (temporary / MARKER_FILE).write_text(json.dumps(wanted, indent=1))
    if folder.exists():
        shutil.rmtree(folder)  # an older demo (it has demo.json) or an empty folder
    temporary.rename(folder)
    return folder


WRITERS = {
    "fracatlas": write_fracatlas,
    "grazpedwri": write_grazpedwri,
    "mura": write_mura,
    "folder": write_folder,
}
