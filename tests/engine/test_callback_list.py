"""agkit.engine.callback_list: the one place a run's callbacks are chosen."""

from toy import toy_loader

from agkit.engine.callback_list import run_callbacks
from agkit.engine.callbacks import Callback
from agkit.engine.checkpoint import Checkpoint
from agkit.engine.progress import Progress
from agkit.engine.time_limit import TimeLimit
from agkit.method.camnet import CAMNet
from agkit.method.train import fit


class Log(Callback):
    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, state, row):
        self.epochs.append(row["epoch"])


def test_it_gives_what_was_asked_for_in_a_fixed_order(tmp_path):
    log = Log()
    chosen = run_callbacks(checkpoint=tmp_path / "c.pt", resume=True, time_limit=60, log=log)
    assert [type(c) for c in chosen] == [Progress, Checkpoint, TimeLimit, Log]
    assert chosen[1].resume and chosen[1].path == tmp_path / "c.pt" and chosen[3] is log
    assert run_callbacks(progress=False) == []
    assert [type(c) for c in run_callbacks(progress=False, time_limit=5)] == [TimeLimit]


def test_a_run_with_them_checkpoints_and_resumes_where_it_stopped(tmp_path):
    path, log = tmp_path / "run.pt", Log()
    first = run_callbacks(progress=False, checkpoint=path)
    fit(CAMNet("tiny", 2), toy_loader(), epochs=1, device="cpu", callbacks=first)
    assert path.exists()
    resumed = run_callbacks(progress=False, checkpoint=path, resume=True, log=log)
    history = fit(CAMNet("tiny", 2), toy_loader(), epochs=2, device="cpu", callbacks=resumed)
    assert history["epoch"].tolist() == [1, 2] and log.epochs == [2]  # epoch 1 came from the file
