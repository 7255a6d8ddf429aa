"""Data for attention guidance: built-in SynthFrac radiographs, the mask store, the
joint image/mask dataset, and loaders for real radiograph datasets.

Every source ends up as a ``GuidedDataset`` whose items are
``(image C x S x S, label, mask 1 x S x S, has_mask)``.

Where things live: ``io`` reads every image (one scaling rule, corrupt files),
``shapes`` turns boxes/polygons/discs and COCO/YOLO/VOC files into masks, ``mask_store``
keeps masks on disk (``mask_exchange``: masks to and from COCO/YOLO files), ``dataset`` is
GuidedDataset and make_loader, ``synthetic`` makes SynthFrac, ``mask_quality`` spoils masks
on purpose, and ``real/`` opens real datasets (``open_dataset``).
"""

from agkit.data.dataset import GuidedDataset, make_loader
from agkit.data.io import read_image
from agkit.data.mask_store import MaskStore
from agkit.data.real import open_dataset
from agkit.data.shapes import rasterize_boxes, rasterize_discs, rasterize_polygons
from agkit.data.synthetic import SynthFrac, load_synthfrac, make_synthfrac

__all__ = [
    "GuidedDataset",
    "make_loader",
    "read_image",
    "MaskStore",
    "rasterize_boxes",
    "rasterize_polygons",
    "rasterize_discs",
    "open_dataset",
    "SynthFrac",
    "make_synthfrac",
    "load_synthfrac",
]
