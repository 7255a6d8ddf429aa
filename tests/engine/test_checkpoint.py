"""agkit.engine.checkpoint: a run saved after every epoch resumes exactly, a finished one is
returned as it is, and resuming with other settings is refused without touching the file."""

import re

import pandas as pd
import pytest
import torch
from toy import same_state, toy_loader, train

from agkit.engine.checkpoint import (
    Checkpoint,
    UnreadableCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from agkit.guidance import CAMGuidance
from agkit.method.camnet import CAMNet
from agkit.method.train import fit


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    straight, _ = train(epochs=3)
    train(epochs=2, callbacks=[Checkpoint(tmp_path / "run.pt")])
    resumed, history = train(epochs=3, callbacks=[Checkpoint(tmp_path / "run.pt", resume=True)])
    assert len(history) == 3 and list(history["epoch"]) == [1, 2, 3]
    assert same_state(straight, resumed)


def test_resume_with_a_guided_dataset_loader(tmp_path):
    """The kit's own loader (seeded sampler with augmentation) also resumes exactly."""
    from agkit.data import GuidedDataset, make_loader

    loader = toy_loader()
    images, labels, masks, _ = (torch.cat(t) for t in zip(*loader, strict=True))

    def run(epochs, callbacks=()):
        torch.manual_seed(0)
        model = CAMNet("tiny", 2, pooling="softmax")
        data = GuidedDataset(images, labels, masks, augment=True)
        loader = make_loader(data, 16, shuffle=True)
        fit(model, loader, lam=0.1, epochs=epochs, lr=3e-3, device="cpu", callbacks=callbacks)
        return model

    straight = run(3)
    run(2, [Checkpoint(tmp_path / "g.pt")])
    resumed = run(3, [Checkpoint(tmp_path / "g.pt", resume=True)])
    assert same_state(straight, resumed)


def test_checkpoint_equals_the_returned_model(tmp_path):
    """BatchNorm recalibration used to run after the last save: the two models differed."""
    model, _ = train(epochs=2, callbacks=[Checkpoint(tmp_path / "run.pt")])
    reloaded = CAMNet("tiny", 2, pooling="softmax")
    load_checkpoint(tmp_path / "run.pt", reloaded)
    assert same_state(model, reloaded)
    x = next(iter(toy_loader(seed=2, shuffle=False)))[0]
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, reloaded.eval()(x).logits)


def test_resuming_a_finished_run_returns_the_stored_model(tmp_path):
    model, history = train(epochs=2, callbacks=[Checkpoint(tmp_path / "run.pt")])
    before = (tmp_path / "run.pt").read_bytes()
    again, history_again = train(epochs=2, callbacks=[Checkpoint(tmp_path / "run.pt", True)])
    assert same_state(model, again)
    pd.testing.assert_frame_equal(history, history_again)
    assert (tmp_path / "run.pt").read_bytes() == before


@pytest.fixture(scope="module")
def two_epoch_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "run.pt"
    train(epochs=2, callbacks=[Checkpoint(path)])
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": 1e-2}, "lr=0.003, this call asks lr=0.01"),
        ({"lam": 1.0}, "lam=0.1, this call asks lam=1.0"),
        ({"optimizer": "sgd"}, "optimizer='adam', this call asks optimizer='sgd'"),
        ({"lr_step": 5}, "lr_step=None, this call asks lr_step=5"),
        ({"guidance": CAMGuidance(resolution="input")}, "resolution='input'"),
        ({"guidance": "rrr"}, r"this call asks guidance='RRRGuidance\(\)'"),
        ({"pooling": "avg"}, "'pooling': 'softmax'"),
    ],
)
def test_resuming_with_another_configuration_is_refused(two_epoch_checkpoint, change, message):
    before = two_epoch_checkpoint.read_bytes()
    model = CAMNet("tiny", 2, pooling=change.pop("pooling", "softmax"))
    with pytest.raises(ValueError, match=message) as info:
        fit(
            model,
            toy_loader(),
            lam=change.pop("lam", 0.1),
            epochs=3,
            lr=change.pop("lr", 3e-3),
            device="cpu",
            callbacks=[Checkpoint(two_epoch_checkpoint, resume=True)],
            **change,
        )
    assert f"Delete {two_epoch_checkpoint}" in str(info.value)
    assert two_epoch_checkpoint.read_bytes() == before  # nothing overwritten


def test_resuming_a_checkpoint_without_configuration_is_refused(tmp_path):
    model = CAMNet("tiny", 2, pooling="softmax")
    save_checkpoint(tmp_path / "old.pt", model, epoch=1)
    with pytest.raises(ValueError, match="stores no training configuration"):
        train(epochs=2, callbacks=[Checkpoint(tmp_path / "old.pt", resume=True)])


def test_resuming_with_fewer_epochs_than_stored_is_refused(two_epoch_checkpoint):
    with pytest.raises(ValueError, match="holds 2 epochs, this call asks for 1"):
        train(epochs=1, callbacks=[Checkpoint(two_epoch_checkpoint, resume=True)])


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "none.pt", CAMNet("tiny", 2))


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (lambda good: b"", "(0 bytes) cannot be read (EOFError"),
        (lambda good: good[: len(good) // 2], "cannot be read (RuntimeError"),  # cut short
        (lambda good: b"not a checkpoint\n", "cannot be read (UnpicklingError"),
    ],
)
def test_an_unreadable_checkpoint_is_named_and_left_as_it_is(
    two_epoch_checkpoint, tmp_path, spoil, problem
):
    path = tmp_path / "run.pt"
    path.write_bytes(spoil(two_epoch_checkpoint.read_bytes()))
    before = path.read_bytes()
    for attempt in (
        lambda: train(epochs=3, callbacks=[Checkpoint(path, resume=True)]),
        lambda: load_checkpoint(path, CAMNet("tiny", 2)),
    ):
        with pytest.raises(UnreadableCheckpoint, match=re.escape(problem)) as info:
            attempt()
        assert "Restore it from a copy, or delete it" in str(info.value)
    assert path.read_bytes() == before  # nothing overwritten
    torch.save({"weights": 1}, path)  # a torch file, but not a checkpoint
    with pytest.raises(UnreadableCheckpoint, match="it holds no model"):
        load_checkpoint(path, CAMNet("tiny", 2))
