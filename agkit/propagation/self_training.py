"""Self-training: a network guided by the drawn masks labels the other images with its CAMs.

Train a guided CAMNet on the few drawn masks (the few-mask recipe of
``agkit.experiments.few_masks``:
the annotated images oversampled), then read its class activation map of each image's
true class: the cells holding the most attention become that image's mask, as many cells
as the drawn masks of its class cover (their median). The teacher and the student are
the same kind of network, so this is the classic self-training loop with CAMs as
pseudo-labels (as in the CAM-refinement line of weakly supervised segmentation).

Its weak point: where the teacher still looks at a shortcut (a laterality marker), the
shortcut goes into the masks and guided training then pulls attention *onto* it.
``marker_mass`` measures that share. A proposal's confidence is the attention mass its
cells hold (1 when the teacher looks only there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agkit.data import GuidedDataset
from agkit.experiments.few_masks import ANNOTATED_SHARE, FEW_MASK_LAM, train_with_few_masks
from agkit.method.camnet import CAMNet
from agkit.method.loss import shrink_masks

TEACHER = {"backbone": "tiny", "epochs": 8, "lr": 3e-3, "batch_size": 32}


def teacher(
    images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, seed: int, **settings
) -> CAMNet:
    """A guided CAMNet trained on ``images`` (n x C x S x S) where only the images with a
    mask (n x 1 x S x S, zeros elsewhere) are guided; ``settings`` override TEACHER."""
    recipe = {**TEACHER, **settings}
    torch.manual_seed(seed)
    model = CAMNet(
        recipe["backbone"], num_classes=2, in_channels=images.shape[1], pooling="softmax"
    )
    dataset = GuidedDataset(images, labels, masks, seed=seed)
    train_with_few_masks(
        dataset,
        model=model,
        lam=FEW_MASK_LAM,
        epochs=recipe["epochs"],
        lr=recipe["lr"],
        batch_size=recipe["batch_size"],
        seed=seed,
        annotated_share=ANNOTATED_SHARE,
        device="cpu",
    )
    return model.eval()


def cell_budget(masks: torch.Tensor, labels: torch.Tensor, drawn: torch.Tensor, grid) -> dict:
    """{class: median number of grid cells the drawn masks of that class cover}."""
    cells = shrink_masks(masks.float(), grid).flatten(1).sum(dim=1)
    return {
        int(c): max(1, int(cells[drawn & (labels == c)].median())) for c in labels[drawn].unique()
    }


@torch.no_grad()
def cam_masks(
    model: CAMNet, images: torch.Tensor, labels: torch.Tensor, budget: dict, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks n x 1 x S x S, confidence n): for each image, the ``budget[label]`` cells
    of most attention in the CAM of its label, and the attention mass they hold."""
    cams = torch.cat(
        [model(images[i : i + batch_size]).cams for i in range(0, len(images), batch_size)]
    )
    own = cams[torch.arange(len(cams)), labels]  # n x h x w
    attention = own.flatten(1).softmax(dim=1)
    ranks = attention.argsort(dim=1, descending=True).argsort(dim=1)
    k = torch.tensor([budget.get(int(c), 0) for c in labels])  # 0: a class never drawn
    cells = (ranks < k[:, None]).float()
    confidence = (attention * cells).sum(dim=1)
    grid = own.shape[-2:]
    masks = F.interpolate(cells.view(-1, 1, *grid), size=images.shape[-2:], mode="nearest")
    return masks, confidence


def propagate_with_cams(images, labels, masks, drawn, grid, seed, **settings):
    """The "self_training" propagator (see agkit.propagation.propagate)."""
    model = teacher(images, labels, masks, seed, **settings)
    return cam_masks(model, images, labels, cell_budget(masks, labels, drawn, grid))
