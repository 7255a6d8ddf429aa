"""Mask propagation (agkit.propagation) and the course runs that train on propagated masks."""

import pytest
import torch
from tiny_runs import TINY  # the experiments tests' tiny profile (32 images, one epoch)

from agkit import experiments
from agkit.data import GuidedDataset
from agkit.propagation import (
    Propagated,
    grid_iou,
    marker_share,
    propagate,
    training_tensors,
    with_propagated,
)
from agkit.propagation.segmenter import augment
from agkit.propagation.self_training import cam_masks, cell_budget


def boxes_by_label(n: int = 24, size: int = 32, seed: int = 0) -> GuidedDataset:
    """Images with a bright square whose place depends on the label: top-left for class 0,
    bottom-right for class 1; the mask is the square. Every third image keeps its mask."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.1 * torch.rand(n, 1, size, size, generator=g)
    masks = torch.zeros(n, 1, size, size)
    for i, label in enumerate(labels.tolist()):
        y, x = (4, 4) if label == 0 else (20, 20)
        images[i, 0, y : y + 8, x : x + 8] = 0.9
        masks[i, 0, y : y + 8, x : x + 8] = 1
    kept = torch.zeros(n, 1, 1, 1)
    kept[::3] = 1
    return GuidedDataset(images, labels, masks * kept, seed=seed)


def test_kept_is_drawn_or_confident_and_not_empty():
    masks = torch.zeros(4, 1, 4, 4)
    masks[0, 0, 0, 0] = masks[1, 0, 1, 1] = masks[2, 0, 2, 2] = 1  # image 3 proposes nothing
    p = Propagated(
        masks=masks,
        confidence=torch.tensor([1.0, 0.9, 0.4, 0.99]),
        drawn=torch.tensor([True, False, False, False]),
    )
    assert p.kept(0.0).tolist() == [True, True, True, False]
    assert p.kept(0.5).tolist() == [True, True, False, False]
    assert p.kept(1.0).tolist() == [True, False, False, False]  # drawn masks always train
    for bad in (1.5, -0.1, float("nan")):  # above 1 or NaN kept no proposal at all
        with pytest.raises(ValueError, match="min_confidence must be a number from 0 to 1"):
            p.kept(bad)
        with pytest.raises(ValueError, match="min_confidence must be a number from 0 to 1"):
            experiments.propagated_config(
                TINY, 0, annotated_ids=("train_00000",), min_confidence=bad
            )


def test_grid_iou_and_marker_share_by_hand():
    grid = (4, 4)  # 16 x 16 masks: each cell is 4 x 4 pixels
    a = torch.zeros(3, 1, 16, 16)
    b = torch.zeros(3, 1, 16, 16)
    a[0, 0, :4, :8] = 1  # cells (0,0) (0,1)
    b[0, 0, :4, 4:12] = 1  # cells (0,1) (0,2)
    a[1, 0, 5, 5] = 1  # one pixel touches cell (1,1)
    b[1, 0, 4:8, 4:8] = 1  # cell (1,1)
    iou = grid_iou(a, b, grid)
    assert iou[0] == pytest.approx(1 / 3) and iou[1] == pytest.approx(1.0)
    assert torch.isnan(iou[2])  # both empty: no overlap to speak of
    markers = torch.zeros(3, 1, 16, 16)
    markers[0, 0, 0:2, 0:2] = 1  # the marker sits in cell (0,0)
    assert marker_share(a, markers, grid) == pytest.approx(1 / 3)  # 1 of a's 3 cells
    assert marker_share(torch.zeros_like(a), markers, grid) == 0.0


def test_propagate_refuses_what_it_cannot_learn_from():
    data = boxes_by_label()
    images, labels, masks = training_tensors(data)
    with pytest.raises(ValueError, match="unknown propagator 'nearest'"):
        propagate("nearest", data, (4, 4))
    empty = GuidedDataset(images, labels, torch.zeros_like(masks))
    with pytest.raises(ValueError, match="nothing to propagate"):
        propagate("segmenter", empty, (4, 4))
    one_class = masks * (labels == 0).float()[:, None, None, None]
    with pytest.warns(UserWarning, match="no image of class 1 has a mask"):
        spread = propagate("segmenter", GuidedDataset(images, labels, one_class), (4, 4), steps=20)
    assert not spread.masks[labels == 1].any() and (spread.confidence[labels == 1] == 0).all()
    assert spread.kept(0.0)[labels == 1].sum() == 0  # they train without a mask
    augmented = GuidedDataset(images, labels, masks, augment=True)
    with pytest.raises(ValueError, match="without augment"):
        training_tensors(augmented)


def test_augment_moves_an_image_and_its_mask_together():
    images, _, masks = training_tensors(boxes_by_label())
    g = torch.Generator().manual_seed(3)
    images, masks = augment(images[:9:3], masks[:9:3], g)
    bright = (images > 0.5).float()
    assert torch.equal(bright, masks)  # the square and its mask flipped and shifted alike


def test_the_segmenter_learns_where_each_class_puts_its_mask():
    data = boxes_by_label()
    propagated = propagate("segmenter", data, (4, 4), seed=0, steps=300)
    full = training_masks_of_every_image()  # every image's square
    drawn = propagated.drawn
    assert drawn.tolist() == [i % 3 == 0 for i in range(24)]
    drawn_masks = training_tensors(data)[2][drawn]
    assert torch.equal(propagated.masks[drawn], drawn_masks)  # drawn masks untouched
    assert (propagated.confidence[drawn] == 1).all()
    iou = grid_iou(propagated.masks[~drawn], full[~drawn], (4, 4))
    assert iou.mean() > 0.8, iou  # the proposals find the square of the right class
    assert ((propagated.confidence >= 0) & (propagated.confidence <= 1)).all()
    again = propagate("segmenter", data, (4, 4), seed=0, steps=300)
    assert torch.equal(again.masks, propagated.masks)  # seeded: the same masks twice


def training_masks_of_every_image() -> torch.Tensor:
    """The squares of boxes_by_label() on every image, n x 1 x 32 x 32."""
    labels = boxes_by_label().labels
    masks = torch.zeros(len(labels), 1, 32, 32)
    for i, label in enumerate(labels.tolist()):
        y, x = (4, 4) if label == 0 else (20, 20)
        masks[i, 0, y : y + 8, x : x + 8] = 1
    return masks


class FakeCAMNet(torch.nn.Module):
    """Returns fixed CAMs (n x 2 x 4 x 4) in the order of the images it is given."""

    def __init__(self, cams):
        super().__init__()
        self.cams = cams
        self.seen = 0

    def forward(self, images):
        out = self.cams[self.seen : self.seen + len(images)]
        self.seen += len(images)
        return type("Out", (), {"cams": out})()


def test_self_training_keeps_the_budgeted_cells_of_the_own_class_cam():
    masks = torch.zeros(4, 1, 8, 8)
    masks[0, 0, :2, :4] = 1  # class 0 drawn: 2 cells of the 4 x 4 grid
    masks[1, 0, :2, :2] = 1  # class 1 drawn: 1 cell
    labels = torch.tensor([0, 1, 0, 1])
    drawn = torch.tensor([True, True, False, False])
    budget = cell_budget(masks, labels, drawn, (4, 4))
    assert budget == {0: 2, 1: 1}
    cams = torch.zeros(4, 2, 4, 4)
    cams[2, 0, 3, 3] = cams[2, 0, 3, 2] = 5.0  # image 2's own class looks at two cells
    cams[2, 1, 0, 0] = 9.0  # the other class's map is ignored
    cams[3, 1, 1, 2] = 5.0
    proposed, confidence = cam_masks(FakeCAMNet(cams), torch.zeros(4, 1, 8, 8), labels, budget)
    cells = proposed[:, 0, ::2, ::2]  # one pixel per cell
    assert cells[2].nonzero().tolist() == [[3, 2], [3, 3]]
    assert cells[3].nonzero().tolist() == [[1, 2]]
    attention = cams[2, 0].flatten().softmax(0)
    assert confidence[2] == pytest.approx(float(attention.topk(2).values.sum()))


def test_with_propagated_keeps_the_images_and_gates_by_confidence():
    data = boxes_by_label()
    masks = training_masks_of_every_image()
    drawn = data.mask_kept.bool()
    confidence = torch.where(drawn, 1.0, torch.linspace(0, 1, 24))
    spread = with_propagated(data, Propagated(masks, confidence, drawn), min_confidence=0.5)
    expected = drawn | (confidence >= 0.5)
    images, labels, spread_masks = training_tensors(spread)
    assert spread_masks.flatten(1).any(dim=1).tolist() == expected.tolist()
    assert torch.equal(spread_masks[expected], masks[expected])
    before = training_tensors(data)
    assert torch.equal(images, before[0]) and torch.equal(labels, before[1])


def test_a_propagated_course_run_stores_how_good_its_masks_were(tmp_path):
    train = experiments.make_splits(experiments.baseline_config(TINY, 0))["train"]
    ids = [train.image_ids[i] for i in range(8)]
    assert {int(train.labels[i]) for i in range(8)} == {0, 1}
    config = experiments.propagated_config(TINY, 0, annotated_ids=ids, propagation="segmenter")
    few = experiments.few_mask_config(TINY, 1.0, 0, annotated_ids=ids)
    assert config.key() != few.key()
    assert config.key() != experiments.propagated_config(TINY, 0, annotated_ids=ids[:6]).key()
    assert (
        config.key()
        != experiments.propagated_config(TINY, 0, annotated_ids=ids, min_confidence=0.5).key()
    )
    assert "propagated by segmenter" in config.label
    dataset = experiments.make_datasets(config)["train"]
    assert int(dataset.mask_kept.sum()) > 8  # the proposals train too
    result = experiments.run(config, tmp_path, progress=False, device="cpu")
    assert result["propagated_images"] == int(dataset.mask_kept.sum()) - 8
    assert 0 <= result["propagated_iou"] <= 1
    assert 0 <= result["propagated_marker_share"] <= 1
    assert "accuracy_val_shifted" in result
    with pytest.raises(ValueError, match="unknown propagation"):
        experiments.propagated_config(TINY, 0, annotated_ids=ids, propagation="magic")


def test_a_few_mask_run_without_a_few_masks_is_refused():
    """An empty annotated_ids without masks_from means every built-in mask is kept."""
    with pytest.raises(ValueError, match="nothing is left to propagate"):
        experiments.propagated_config(TINY, 0, annotated_ids=(), propagation="segmenter")
    with pytest.raises(ValueError, match="every image is annotated"):
        experiments.few_mask_config(TINY, 1.0, 0, annotated_ids=(), share=0.5)
    full = experiments.few_mask_config(TINY, 1.0, 0, annotated_ids=(), share=None)
    assert full == experiments.guided_config(TINY, 1.0, 0)  # the full-annotation run


def test_a_figure_reads_the_stored_masks_instead_of_training_the_propagator_again(
    tmp_path, monkeypatch
):
    from agkit.experiments import splits

    train = experiments.make_splits(experiments.baseline_config(TINY, 0))["train"]
    config = experiments.propagated_config(
        TINY, 0, annotated_ids=list(train.image_ids[:8]), propagation="segmenter"
    )
    experiments.run(config, tmp_path, progress=False, device="cpu")
    trained_with = splits.propagated_masks(config)
    monkeypatch.setattr(splits, "_propagation_memo", {})  # another process: a notebook's
    monkeypatch.setattr(splits, "propagate", lambda *a, **k: pytest.fail("propagated again"))
    stored = experiments.load_propagated(config, tmp_path)
    for name in ("masks", "confidence", "drawn"):
        assert torch.equal(getattr(stored, name), getattr(trained_with, name))
        assert getattr(stored, name).dtype == getattr(trained_with, name).dtype
    assert int(stored.drawn.sum()) == 8
    # a packed cache carries them (make cache -> use_cache on a student's machine)
    archive = experiments.pack_runs([config], tmp_path, tmp_path / "runs.tar.gz")
    assert experiments.use_cache(archive, tmp_path / "student")["unpacked"] == 1
    unpacked = experiments.load_propagated(config, tmp_path / "student")
    assert torch.equal(unpacked.masks, trained_with.masks)
    # deleted by hand: drawn again, the same, since the propagator is seeded
    monkeypatch.undo()
    (experiments.run_folder(config, tmp_path) / "propagated.pt").unlink()
    splits._propagation_memo.clear()
    assert torch.equal(experiments.load_propagated(config, tmp_path).masks, trained_with.masks)
    # damaged (a zero-byte file): named with the fix, and left as it is
    (experiments.run_folder(config, tmp_path) / "propagated.pt").write_bytes(b"")
    with pytest.raises(experiments.DamagedRunError, match=r"propagated.pt \(0 bytes\)"):
        experiments.load_propagated(config, tmp_path)
    assert (experiments.run_folder(config, tmp_path) / "propagated.pt").read_bytes() == b""
    with pytest.raises(ValueError, match="propagates no masks"):
        experiments.load_propagated(experiments.baseline_config(TINY, 0), tmp_path)
