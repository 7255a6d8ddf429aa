"""Old home of the mask store and the rasterisers, kept so that old imports keep working.

The store now lives in ``agkit.data.mask_store`` and the shapes (rasterisers, masks ->
boxes/polygons, COCO/YOLO/VOC parsing) in ``agkit.data.shapes``; import from there.
"""

from agkit.data.mask_store import (CorruptIndexError, CorruptMaskError, MaskStore,
                                   MaskStoreReport, safe_file_name)
from agkit.data.shapes import (mask_to_boxes, mask_to_polygons, rasterize_boxes, rasterize_discs,
                               rasterize_polygons)

__all__ = ["MaskStore", "MaskStoreReport", "CorruptIndexError", "CorruptMaskError",
           "rasterize_boxes", "rasterize_polygons", "rasterize_discs", "mask_to_boxes",
           "mask_to_polygons", "safe_file_name"]
