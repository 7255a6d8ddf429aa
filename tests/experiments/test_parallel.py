"""agkit.experiments.parallel: run_many, in this process or in reused worker processes."""

import pandas as pd
import pytest
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


def _configs(seeds):
    return [experiments.guided_config(TINY, 1.0, s) for s in seeds]


def test_start_runs_queues_each_run_once_and_run_many_waits_for_those(tmp_path):
    configs = _configs(range(4))
    experiments.run_many(configs[:1], tmp_path, progress=False, jobs=1, device="cpu")
    try:
        # the stored run is not queued; a second call and run_many queue nothing again
        assert experiments.start_runs(configs, tmp_path, jobs=2, device="cpu") == 3
        pool = parallel._pool["executor"]
        submitted = pool._queue_count
        assert experiments.start_runs(configs, tmp_path, jobs=2, device="cpu") == 3
        table = experiments.run_many(configs[1:3], tmp_path, progress=False, jobs=2, device="cpu")
        assert pool._queue_count == submitted
        assert list(table["seed"]) == [1, 2]
        assert set(parallel._queued) <= {(str(tmp_path), configs[3].key())}  # collected: gone
        experiments.run_many(configs, tmp_path, progress=False, jobs=2, device="cpu")
        assert pool._queue_count == submitted and parallel._pool["executor"] is pool
        # the same runs for another folder are runs of their own: trained and stored there
        experiments.start_runs(configs[:2], tmp_path / "other", jobs=2, device="cpu")
        experiments.run_many(configs[:2], tmp_path / "other", progress=False, jobs=2, device="cpu")
        assert pool._queue_count == submitted + 2
        assert all(experiments.is_stored(c, tmp_path / "other") for c in configs[:2])
    finally:
        experiments.shutdown_workers()
    assert not parallel._queued


def test_start_runs_with_one_job_queues_nothing(tmp_path):
    assert experiments.start_runs(_configs([0]), tmp_path, jobs=1, device="cpu") == 0
    assert parallel._pool["executor"] is None and not parallel._queued
    assert not experiments.is_stored(_configs([0])[0], tmp_path)


def test_an_error_of_a_queued_run_surfaces_in_the_run_many_that_asks_for_it(tmp_path):
    from dataclasses import replace

    late = [replace(c, time_limit=1e-9) for c in _configs([0, 1])]  # past it at once
    try:
        assert experiments.start_runs(late, tmp_path, jobs=2, device="cpu") == 2
        with pytest.raises(experiments.TimeLimitReached, match="time limit"):
            experiments.run_many(late, tmp_path, progress=False, jobs=2, device="cpu")
    finally:
        experiments.shutdown_workers()
    assert not any(experiments.is_stored(c, tmp_path) for c in late)


def test_a_stop_in_run_many_cancels_the_queued_runs_not_started(tmp_path, monkeypatch):
    configs = _configs(range(8))
    try:
        experiments.start_runs(configs, tmp_path, jobs=2, device="cpu")
        queued = list(parallel._queued.values())

        def stop_button(futures):
            raise KeyboardInterrupt
            yield

        monkeypatch.setattr(parallel, "as_completed", stop_button)
        with pytest.raises(KeyboardInterrupt):
            experiments.run_many(configs[:1], tmp_path, progress=False, jobs=2, device="cpu")
        assert not parallel._queued
        # at most the two running and one waiting in the call queue had started
        assert sum(future.cancelled() for future in queued) >= 5
    finally:
        experiments.shutdown_workers()
    assert sum(experiments.is_stored(c, tmp_path) for c in configs) <= 3
