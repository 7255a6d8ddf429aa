"""Data for attention guidance: built-in SynthFrac radiographs, the mask store, the
joint image/mask dataset, and loaders for real radiograph datasets.

Every source ends up as a ``GuidedDataset`` whose items are
``(image C x S x S, label, mask 1 x S x S, has_mask)``.
"""

from agkit.data.dataset import GuidedDataset, make_loader, read_image
from agkit.data.masks import (MaskStore, rasterize_boxes, rasterize_discs,
                              rasterize_polygons)
from agkit.data.real import open_dataset
from agkit.data.synthetic import SynthFrac, load_synthfrac, make_synthfrac

__all__ = [
    "GuidedDataset", "make_loader", "read_image",
    "MaskStore", "rasterize_boxes", "rasterize_polygons", "rasterize_discs",
    "open_dataset",
    "SynthFrac", "make_synthfrac", "load_synthfrac",
]
