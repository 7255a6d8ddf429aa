"""agkit.engine.time_limit: a limit stops a run between whole epochs only, says so, and a run
it stopped resumes into exactly the uninterrupted one."""

import copy
import time
import warnings

import pytest
import torch
from toy import same_state, toy_loader, train

from agkit.engine.checkpoint import Checkpoint, load_checkpoint
from agkit.engine.time_limit import TimeLimit, TimeLimitWarning
from agkit.method.camnet import CAMNet
from agkit.method.train import fit


class SlowClock:
    """A stand-in for time.perf_counter that jumps forward at one chosen training batch."""

    def __init__(self, jump_at_batch):
        self.now, self.batches, self.jump_at_batch = 0.0, 0, jump_at_batch

    def __call__(self):
        return self.now

    def wrap(self, loader):
        clock = self

        class Loader:
            def __init__(self):
                self.dataset, self.batch_size = loader.dataset, loader.batch_size
                self.generator = loader.generator

            def __len__(self):
                return len(loader)

            def __iter__(self):
                for batch in loader:
                    clock.batches += 1
                    if clock.batches == clock.jump_at_batch:
                        clock.now += 1000.0  # the machine got busy
                    yield batch

        return Loader()


def test_a_limit_passed_inside_an_epoch_stops_after_that_whole_epoch(tmp_path, monkeypatch):
    """The limit passes in the middle of epoch 2 (6 batches an epoch): epoch 2 is finished,
    epoch 3 never starts, so the model is the 2-epoch model whatever the machine's speed."""
    clock = SlowClock(jump_at_batch=6 + 3)
    monkeypatch.setattr(time, "perf_counter", clock)
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    with pytest.warns(TimeLimitWarning, match="after 2 of 3 epochs"):
        history = fit(
            model,
            clock.wrap(toy_loader()),
            lam=0.1,
            epochs=3,
            lr=3e-3,
            device="cpu",
            callbacks=[TimeLimit(500), Checkpoint(tmp_path / "run.pt")],
        )
    monkeypatch.undo()
    assert len(history) == 2 and history.attrs["epochs_run"] == 2
    assert history.attrs["stopped_by_time_limit"] is True
    assert same_state(model, train(epochs=2)[0])  # exactly the model of a 2-epoch run
    stored = CAMNet("tiny", 2, pooling="softmax")
    assert load_checkpoint(tmp_path / "run.pt", stored)["epoch"] == 2
    assert same_state(stored, model)
    # Resuming without the limit gives exactly the uninterrupted 3-epoch run.
    resumed, history_resumed = train(epochs=3, callbacks=[Checkpoint(tmp_path / "run.pt", True)])
    assert same_state(resumed, train(epochs=3)[0])
    assert history_resumed.attrs["stopped_by_time_limit"] is False
    assert len(history_resumed) == 3


def test_a_limit_passed_before_the_first_epoch_raises_and_keeps_the_model(tmp_path, monkeypatch):
    ticks = iter(range(0, 10**9, 1000))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    before = copy.deepcopy(model)
    with pytest.raises(TimeoutError, match="before the first epoch started"):
        fit(
            model,
            toy_loader(),
            lam=0.1,
            epochs=3,
            device="cpu",
            callbacks=[TimeLimit(500), Checkpoint(tmp_path / "run.pt")],
        )
    assert same_state(model, before) and not (tmp_path / "run.pt").exists()


def test_a_limit_not_reached_records_a_full_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimeLimitWarning)
        _, history = train(epochs=2, callbacks=[TimeLimit(1e6)])
    assert history.attrs == {
        **history.attrs,
        "epochs_run": 2,
        "epochs": 2,
        "stopped_by_time_limit": False,
    }
