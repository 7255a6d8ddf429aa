"""agkit.course.train_ahead: the background trainer of ``make course`` trains every run the
notebooks will ask for, in an order that meets them late, and stops cleanly."""

import json
import os
import time

import pytest
from filelock import FileLock
from tiny_runs import TINY

from agkit import experiments
from agkit.course import train_ahead
from agkit.experiments.parallel import shutdown_workers


def test_it_trains_every_built_in_mask_run_of_the_course_once():
    profile, lam = experiments.get_profile("workshop"), 3.0
    chosen_first = [
        experiments.guided_config(profile, w, profile.seeds[0]) for w in profile.lambdas
    ]
    chosen_first += [experiments.baseline_config(profile, s) for s in profile.seeds]
    groups = train_ahead.ahead_order(profile, lam)
    course = {c.key() for group in experiments.course_configs(profile, lam).values() for c in group}
    ahead = {c.key() for group in groups for c in group}
    assert {c.key() for c in chosen_first} | ahead == course
    ablations = list(experiments.ablation_configs(profile, lam).values())
    assert groups[0] == ablations[-1]  # notebook 4's last section first: the farthest ahead
    assert groups[-1] == experiments.course_configs(profile, lam)["03"]


def test_after_it_the_course_finds_every_run_stored(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.PROFILES, TINY.name, TINY)
    try:
        assert train_ahead.main(["--profile", TINY.name, "--runs", str(tmp_path)]) == 0
    finally:
        shutdown_workers()  # its run_many workers would outlive the test
    lam, _ = experiments.choose_lambda(TINY, tmp_path, progress=False)
    course = [c for group in experiments.course_configs(TINY, lam).values() for c in group]
    assert all(experiments.is_stored(c, tmp_path) for c in course)
    printed = capsys.readouterr().out
    assert printed.startswith(f"trained ahead with lambda {lam:g}: ")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups")
def test_stop_ends_the_trainer_and_its_workers_and_frees_their_runs(tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "ahead.log"
    process = train_ahead.start("ci", runs, log, device="cpu")
    deadline = time.monotonic() + 120
    while not list(runs.glob("experiments/*.lock")) and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    assert list(runs.glob("experiments/*.lock")), "the trainer never started a run"
    # Lowest priority, in a group of its own but in our session: Linux shares the CPU fairly
    # between sessions, so a session of its own would make its nice meaningless.
    assert os.getpriority(os.PRIO_PROCESS, process.pid) == 19
    assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    assert os.getsid(process.pid) == os.getsid(0)
    train_ahead.stop(process)
    deadline = time.monotonic() + 10
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(process.pid)  # its workers ended with it
    assert "stopped when the notebooks ended" in train_ahead.report(process, log)
    for lock in runs.glob("experiments/*.lock"):
        FileLock(str(lock)).acquire(timeout=0)  # no run is left locked
    for result in runs.glob("experiments/*/result.json"):
        json.loads(result.read_text())  # what was stored is whole


def test_beside_the_trainer_notebook_5_runs_before_notebook_4_and_nothing_else_moves(tmp_path):
    names = ["01_a", "02_b", "03_c", "04_d", "05_e", "06_f"]
    notebooks = [tmp_path / f"{name}.ipynb" for name in names]
    order = [n.stem for n in train_ahead.notebook_order(notebooks)]
    assert order == ["01_a", "02_b", "03_c", "05_e", "04_d", "06_f"]
    assert train_ahead.notebook_order(notebooks[:4]) == notebooks[:4]  # --only 01 03 and such
    assert train_ahead.notebook_order([]) == []


def test_a_bad_device_or_runs_folder_stops_it_with_one_line_before_it_trains(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    cases = {
        ("--device", "bogus"): "device 'bogus' is not a device torch knows",
        ("--runs", str(a_file)): f"--runs {a_file} cannot be made a folder",
        ("--runs", str(a_file / "runs")): f"--runs {a_file / 'runs'} cannot be made a folder",
    }
    for args, named in cases.items():
        with pytest.raises(SystemExit) as stopped:
            train_ahead.main(["--profile", "ci", "--runs", str(tmp_path / "runs"), *args])
        assert stopped.value.code == 2 and named in capsys.readouterr().err
    assert a_file.read_text() == "mine" and not any((tmp_path / "runs").glob("**/*.json"))
