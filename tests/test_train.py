"""The training loop on a toy task: it learns, repeats bit for bit, resumes, stops on NaN."""

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from agkit.models import CAMNet
from agkit.train import TrainingDiverged, evaluate, fit


def toy_loader(n=96, seed=0, shuffle=True):
    """Positives carry a bright 8 x 8 square at a random place; the mask marks it."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 32, 32, generator=g) * 0.3
    labels = torch.arange(n) % 2
    masks = torch.zeros(n, 1, 32, 32)
    for i in range(n):
        y, x = torch.randint(0, 24, (2,), generator=g).tolist()
        masks[i, 0, y:y + 8, x:x + 8] = 1
        if labels[i]:
            images[i, 0, y:y + 8, x:x + 8] += 0.6
    data = TensorDataset(images, labels, masks, torch.ones(n, dtype=torch.bool))
    return DataLoader(data, batch_size=16, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


def train(lam=0.1, epochs=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = CAMNet("tiny", 2, pooling="softmax")
    history = fit(model, toy_loader(), toy_loader(seed=1, shuffle=False), lam=lam, epochs=epochs,
                  lr=3e-3, seed=seed, progress=False, device="cpu", **kwargs)
    return model, history


def test_training_lowers_the_loss_and_learns_the_toy_task():
    model, history = train(epochs=6)
    assert list(history.columns[:4]) == ["epoch", "loss", "ce", "att"]
    assert history["loss"].iloc[-1] < 0.7 * history["loss"].iloc[0]
    assert evaluate(model, toy_loader(seed=2, shuffle=False))["accuracy"] > 0.8


def test_same_seed_repeats_bit_for_bit():
    model_a, history_a = train(seed=3)
    model_b, history_b = train(seed=3)
    pd.testing.assert_frame_equal(history_a.drop(columns="seconds"), history_b.drop(columns="seconds"))
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    straight, history_straight = train(epochs=3)
    train(epochs=2, checkpoint=tmp_path / "run.pt")
    resumed, history_resumed = train(epochs=3, checkpoint=tmp_path / "run.pt", resume=True)
    assert len(history_resumed) == 3
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_baseline_history_has_zero_attention_loss():
    _, history = train(lam=0.0, epochs=1)
    assert (history["att"] == 0).all()
    assert {"val_accuracy", "val_auc", "val_mass_in_mask"} <= set(history.columns)


def test_nan_loss_stops_with_a_clear_message():
    model = CAMNet("tiny", 2)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        fit(model, toy_loader(), lam=0.0, epochs=1, progress=False, device="cpu")


def test_labels_outside_the_classes_are_explained():
    images, labels, masks, has = next(iter(toy_loader()))
    bad = DataLoader(TensorDataset(images, labels + 5, masks, has), batch_size=8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        fit(CAMNet("tiny", 2), bad, epochs=1, progress=False, device="cpu")


def test_resume_with_a_guided_dataset_loader(tmp_path):
    """The kit's own loader (seeded sampler with augmentation) also resumes exactly."""
    from agkit.data import GuidedDataset, make_loader

    loader = toy_loader()
    images, labels, masks, _ = (torch.cat(t) for t in zip(*loader))
    def run(epochs, **kwargs):
        torch.manual_seed(0)
        model = CAMNet("tiny", 2, pooling="softmax")
        data = GuidedDataset(images, labels, masks, augment=True)
        fit(model, make_loader(data, 16, shuffle=True), lam=0.1, epochs=epochs, lr=3e-3,
            progress=False, device="cpu", **kwargs)
        return model
    straight = run(3)
    run(2, checkpoint=tmp_path / "g.pt")
    resumed = run(3, checkpoint=tmp_path / "g.pt", resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
