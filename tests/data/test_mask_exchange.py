"""agkit.data.mask_exchange: masks to COCO/YOLO and back without a store."""

import numpy as np


def test_mask_exchange_round_trips_without_a_store():
    from agkit.data.mask_exchange import coco_masks, mask_to_yolo, masks_to_coco

    mask = np.zeros((4, 8), np.uint8)
    mask[1:3, 2:6] = 1  # one component: box x 2..6, y 1..3
    mask[0, 7] = 1  # a second one
    coco = masks_to_coco([("a/b.png", mask)], file_name=lambda iid: iid.upper())
    # components in raster order: the pixel at row 0 comes first
    assert [a["bbox"] for a in coco["annotations"]] == [[7, 0, 1, 1], [2, 1, 4, 2]]
    back = coco_masks(coco, image_id=lambda name: name.lower())
    np.testing.assert_array_equal(back["a/b.png"], mask)
    # centres (7.5 / 8, 0.5 / 4) and (4 / 8, 2 / 4), sizes (1 / 8, 1 / 4) and (4 / 8, 2 / 4)
    assert mask_to_yolo(mask, 3) == (
        "3 0.937500 0.125000 0.125000 0.250000\n3 0.500000 0.500000 0.500000 0.500000\n"
    )
