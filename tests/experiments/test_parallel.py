"""agkit.experiments.parallel: run_many, in this process or in reused worker processes."""

import pandas as pd
from tiny_runs import TINY, FitCalls

from agkit import experiments
from agkit.experiments import parallel, store


def test_device_is_passed_to_fit(tmp_path, monkeypatch):
    fit = FitCalls()
    monkeypatch.setattr(store, "fit", fit)
    configs = [experiments.baseline_config(TINY, 0), experiments.guided_config(TINY, 1.0, 0)]
    experiments.run_many(configs, tmp_path, progress=False, jobs=1, device="cpu")
    assert [str(call["device"]) for call in fit.calls] == ["cpu", "cpu"]


def test_workers_give_the_numbers_of_the_notebook_process_and_are_reused(tmp_path):
    configs = [experiments.baseline_config(TINY, 0), experiments.guided_config(TINY, 1.0, 0)]
    here = experiments.run_many(configs, tmp_path / "here", progress=False, jobs=1, device="cpu")
    try:
        pooled = experiments.run_many(
            configs, tmp_path / "pool", progress=False, jobs=2, device="cpu"
        )
        pool = parallel._pool["executor"]
        more = [experiments.guided_config(TINY, 3.0, 0), experiments.guided_config(TINY, 1.0, 1)]
        experiments.run_many(more, tmp_path / "pool", progress=False, jobs=2, device="cpu")
        assert parallel._pool["executor"] is pool  # no new processes for the second call
        for worker in list(pool._processes.values()):
            worker.kill()  # killed from outside (out of memory, a task manager)
            worker.join()
        last = [experiments.guided_config(TINY, 3.0, 1), experiments.guided_config(TINY, 1.0, 2)]
        experiments.run_many(last, tmp_path / "pool", progress=False, jobs=2, device="cpu")
        assert all(experiments.is_stored(c, tmp_path / "pool") for c in last)
    finally:
        experiments.shutdown_workers()
    columns = [c for c in here.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(pooled[columns], here[columns])


def test_stored_runs_show_no_progress_bar_with_a_fictional_rate(tmp_path, capsys):
    configs = [experiments.baseline_config(TINY, 0)]
    experiments.run_many(configs, tmp_path, progress=False, jobs=1, device="cpu")
    capsys.readouterr()
    experiments.run_many(configs, tmp_path, desc="again", jobs=1, device="cpu")
    out, err = capsys.readouterr()
    assert "again: all 1 runs are stored" in out and "nothing to train" in out
    assert "it/s" not in err and "again" not in err  # no bar when nothing trains
