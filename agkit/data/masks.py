"""Deprecated: the old home of the mask store and the rasterisers (goes in the next release).

The store lives in ``agkit.data.mask_store`` and the shapes (rasterisers, masks ->
boxes/polygons, COCO/YOLO/VOC parsing) in ``agkit.data.shapes``; import from there.
"""

import warnings

from agkit.data.mask_store import (  # noqa: F401
    CorruptIndexError,
    CorruptMaskError,
    MaskStore,
    MaskStoreReport,
    safe_file_name,
)
from agkit.data.shapes import (  # noqa: F401
    mask_to_boxes,
    mask_to_polygons,
    rasterize_boxes,
    rasterize_discs,
    rasterize_polygons,
)

warnings.warn(
    "agkit.data.masks is now agkit.data.mask_store (MaskStore) and agkit.data.shapes "
    "(rasterisers); the old module goes in the next release.",
    DeprecationWarning,
    stacklevel=2,
)
