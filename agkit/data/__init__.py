"""Data for attention guidance: built-in SynthFrac radiographs, the mask store, the
joint image/mask dataset, and loaders for real radiograph datasets.

Every source ends up as a ``GuidedDataset`` whose items are
``(image C x S x S, label, mask 1 x S x S, has_mask)``.

Where things live: ``io`` reads every image (``image_scale``: the one scaling rule,
``dicom``: DICOM files, ``corrupt_policy``/``corrupt_files``: damaged files), ``shapes`` turns
boxes/polygons/discs into masks and back (``annotation_shapes`` with ``annotation_coco``,
``annotation_yolo``, ``annotation_voc``: annotation files), ``mask_store`` keeps masks on disk
(``mask_store_png``, ``mask_store_index``, ``mask_store_check``; ``mask_exchange``: masks to
and from COCO/YOLO files), ``dataset`` is GuidedDataset (``dataset_inputs``,
``dataset_items``) and ``loader`` make_loader, ``synthetic`` makes SynthFrac
(``synthetic_scene``, ``synthetic_anatomy``, ``synthetic_marker``), ``mask_quality`` spoils
masks on purpose, and ``real/`` opens real datasets (``open_dataset``).
"""

from agkit.data.dataset import GuidedDataset
from agkit.data.io import read_image
from agkit.data.loader import make_loader
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
