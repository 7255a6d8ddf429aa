"""Recipes: complete experiments with the settings of a publication, in one call.

``cub_recipe`` repeats the method authors' public CUB-200-2011 demonstration: few-shot
bird classification with an ImageNet-pretrained ResNet-50, guided by discs around the
annotated part locations. It needs the CUB download (data/README.md) and a GPU for the
full 95 epochs at 448 px. Measured on one H200 with 500 x 375 JPEGs (5 images per class,
so 1,000 training images): about 12 s per epoch with num_workers=0 and 5 s with
num_workers=8, i.e. roughly 20 or 8 minutes for 95 epochs, plus about a minute for the
5,794-image test pass; about 11 GiB of GPU memory at batch 32. Decoding and augmenting
the JPEGs on the CPU is the bottleneck, hence the workers (unpack the .tgz first).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from torchvision.transforms import v2

from agkit.data.loader import make_loader
from agkit.data.real import open_dataset
from agkit.engine.callback_list import run_callbacks
from agkit.method.camnet import CAMNet
from agkit.method.predict import evaluate
from agkit.method.train import fit

# Test accuracy (%) at epoch 95 reported by the authors (ResNet-50, 448 px), for
# 5/10/15/20 training images per class: the numbers to compare a cub_recipe run with.
PUBLISHED_CUB = pd.DataFrame(
    {
        5: [26.0, 50.9, 52.0, 50.0],
        10: [52.2, 65.8, 65.6, 65.7],
        15: [65.2, 71.0, 70.8, 71.5],
        20: [72.9, 76.1, 75.3, 75.7],
    },
    index=pd.Index([0.0, 0.001, 0.01, 0.1], name="lam"),
).rename_axis(columns="images_per_class")


def cub_transforms(size: int = 448) -> tuple[v2.Transform, v2.Transform]:
    """(train, test) joint image/mask transforms of the authors, scaled to ``size``.

    train: RandomResizedCrop(size) + horizontal flip; test: Resize(size * 8/7) (512 for
    448) + CenterCrop(size). Called as transform(tv_tensors.Image, tv_tensors.Mask).
    """
    train = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
    test = v2.Compose([v2.Resize(round(size * 512 / 448), antialias=True), v2.CenterCrop(size)])
    return train, test


def cub_datasets(root, split: str, *, size: int = 448, **options):
    """One CUB split with the authors' transforms: "train" gets the random train transform,
    "val" and "test" the deterministic Resize + CenterCrop (no augmentation).
    ``options`` go to open_dataset (images_per_class, radius, seed, ...)."""
    train_tf, test_tf = cub_transforms(size)
    augment = split == "train"
    ds = open_dataset("cub", root, split, size=size, augment=augment, **options)
    return ds.with_transform(train_tf if augment else test_tf)


def cub_recipe(
    root,
    images_per_class: int = 5,
    lam: float = 0.01,
    epochs: int = 95,
    device=None,
    *,
    pooling: str | None = None,
    backbone: str = "resnet50",
    pretrained: bool = True,
    size: int = 448,
    batch_size: int = 32,
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    lr_step: int = 30,
    radius: float = 50.0,
    val_per_class: int = 0,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    checkpoint=None,
    time_limit: float | None = None,
) -> dict:
    """Train and test one cell of the authors' CUB-200-2011 table.

    The protocol: ``images_per_class`` training images per class (seeded draw), masks =
    discs of ``radius`` px around the visible parts; CAMNet(backbone, 200 classes, RGB)
    (the class count is read from the data)
    from ImageNet weights with softmax pooling when guided (lam > 0) and average pooling
    for the baseline (lam = 0); SGD lr 1e-3, momentum 0.9, weight decay 1e-4, learning
    rate x0.1 every 30 epochs, batch 32, 95 epochs; train RandomResizedCrop(448) + flip,
    test Resize(512) + CenterCrop(448), the mask transformed with the image.

    Published test accuracy (%) at epoch 95 (also in ``PUBLISHED_CUB``):

        images per class       5     10     15     20
        baseline            26.0   52.2   65.2   72.9
        guided, lam=0.001   50.9   65.8   71.0   76.1
        guided, lam=0.01    52.0   65.6   70.8   75.3
        guided, lam=0.1     50.0   65.7   71.5   75.7

    Args:
        root: CUB_200_2011.tgz, or the folder holding it or the unpacked CUB_200_2011/.
        pooling: override the pooling ("avg" / "softmax") chosen from lam.
        val_per_class: > 0 adds a val loader (held-out training images) to the history.
        Other arguments are passed to open_dataset, CAMNet and agkit.method.train.fit.

    Returns:
        dict with history (fit's DataFrame), test (evaluate's scores on the official
        test set), test_accuracy (%, comparable with the table), published (the table's
        value for this cell, or None) and model.
    """
    pooling = pooling or ("softmax" if lam > 0 else "avg")
    common: dict[str, Any] = dict(
        size=size,
        in_channels=3,
        radius=radius,
        seed=seed,
        val_per_class=val_per_class,
        images_per_class=images_per_class,
    )
    train, test = cub_datasets(root, "train", **common), cub_datasets(root, "test", **common)
    val_loader = None
    if val_per_class > 0:
        val = cub_datasets(root, "val", **common)
        val_loader = make_loader(val, batch_size=batch_size, num_workers=num_workers)

    if num_workers > 0:
        for ds in (train, test):
            ds[0]  # a .tgz is read here once, not by every worker in every epoch
    model = CAMNet(
        backbone,
        num_classes=len(train.class_names),
        in_channels=3,
        pooling=pooling,
        pretrained=pretrained,
    )
    history = fit(
        model,
        make_loader(train, batch_size=batch_size, shuffle=True, seed=seed, num_workers=num_workers),
        val_loader,
        lam=lam,
        epochs=epochs,
        lr=lr,
        optimizer="sgd",
        momentum=momentum,
        weight_decay=weight_decay,
        lr_step=lr_step,
        lr_gamma=0.1,
        seed=seed,
        device=device,
        callbacks=run_callbacks(progress=progress, checkpoint=checkpoint, time_limit=time_limit),
    )
    scores = evaluate(model, make_loader(test, batch_size=batch_size, num_workers=num_workers))
    published = None
    if images_per_class in PUBLISHED_CUB.columns and lam in PUBLISHED_CUB.index:
        published = float(PUBLISHED_CUB.at[lam, images_per_class])
    return {
        "history": history,
        "test": scores,
        "test_accuracy": 100 * scores["accuracy"],
        "published": published,
        "model": model,
    }
