"""agkit.experiments.store: one run trained, scored and stored once, whatever the machine."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import TINY, FitCalls, without_timing

from agkit import experiments
from agkit.experiments import store


def test_run_is_cached_and_reloadable(tmp_path, monkeypatch):
    config = experiments.guided_config(TINY, 1.0)
    first = experiments.run(config, tmp_path, progress=False, device="cpu")
    assert {
        "accuracy_id",
        "accuracy_shifted",
        "auc_shifted",
        "mass_in_mask",
        "accuracy_val",
        "pointing_game_shifted",
        "iou_val",
        "source_hash",
        "masks_hash",
    } <= set(first)
    assert not [k for k in first if k.startswith("acc_")]  # one name per idea: accuracy_
    assert first["epochs_run"] == first["epochs"] == 1 and first["device"] == "cpu"
    monkeypatch.setattr(store, "fit", FitCalls(allow=False))
    assert experiments.run(config, tmp_path) == first  # same everything: reused
    model = experiments.load_model(config, tmp_path)
    out = model(torch.rand(2, 1, 32, 32))
    assert out.cams.shape == (2, 2, 4, 4)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("result.json", b""),  # a zero-byte file
        ("result.json", b'{"accuracy_shifted": 0.9'),  # cut short, or edited by hand
        ("model.pt", b""),
        ("model.pt", b"PK\x03\x04 not a zip"),
        ("history.csv", b""),
    ],
)
def test_a_damaged_stored_run_is_named_with_the_fix_and_left_as_it_is(
    tmp_path, monkeypatch, name, damage
):
    config = experiments.guided_config(TINY, 1.0)
    experiments.run(config, tmp_path, progress=False, device="cpu")
    folder = store.run_folder(config, tmp_path)
    (folder / name).write_bytes(damage)
    monkeypatch.setattr(store, "fit", FitCalls(allow=False))  # nothing trains over it
    with pytest.raises(experiments.DamagedRunError) as info:
        experiments.run(config, tmp_path)
        experiments.load_model(config, tmp_path)
        experiments.load_history(config, tmp_path)
    message = str(info.value)
    assert f"the stored run in {folder} is damaged: {name} ({len(damage):,} bytes)" in message
    assert message.endswith("Delete that folder and run again to train the run anew.")
    assert (folder / name).read_bytes() == damage


def test_time_limit_hit_raises_and_stores_nothing(tmp_path):
    config = experiments.guided_config(TINY, 1.0, epochs=3, time_limit=1e-6)
    message = r"time limit of 1e-06 s after \d of 3 epochs"
    with pytest.raises(experiments.TimeLimitReached, match=message):
        experiments.run(config, tmp_path, progress=False, device="cpu")
    assert not experiments.is_stored(config, tmp_path)
    assert not list(tmp_path.rglob("result.json"))


def test_same_result_alone_and_under_load(tmp_path):
    config = experiments.guided_config(TINY, 1.0, epochs=2, time_limit=600)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a notebook's process; run_many's workers have one thread
    try:
        alone = experiments.run(config, tmp_path / "alone", progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    torch.set_num_threads(1)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        loaded = experiments.run(config, tmp_path / "loaded", progress=False, device="cpu")
    finally:
        hog.kill()
        hog.wait()
        torch.set_num_threads(threads)
    assert without_timing(loaded) == without_timing(alone)
    weights = [
        torch.load(tmp_path / d / "experiments" / config.key() / "model.pt", weights_only=True)
        for d in ("alone", "loaded")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# A process that trains TINY's guided run: it says so as training starts, then waits until
# the file ``go`` exists (at most two minutes) before it trains.
TRAINER = """
import os, sys, time
sys.path.insert(0, {tests!r})
from tiny_runs import TINY
from agkit import experiments
from agkit.experiments import store

real_fit, go = store.fit, {go!r}
def announced_fit(*args, **kwargs):
    print("training", flush=True)
    started = time.monotonic()
    while not os.path.exists(go) and time.monotonic() - started < 120:
        time.sleep(0.05)
    return real_fit(*args, **kwargs)
store.fit = announced_fit
result = experiments.run(experiments.guided_config(TINY, 1.0), {runs!r}, device="cpu")
print("done", result["key"], result["accuracy_shifted"], flush=True)
"""


def _trainer(tmp_path, name):
    script = tmp_path / f"{name}.py"
    tests, go, runs = str(Path(__file__).resolve().parents[1]), tmp_path / "go", tmp_path / "runs"
    script.write_text(TRAINER.format(tests=tests, go=str(go), runs=str(runs)))
    return subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_on_one_runs_folder_train_a_run_once(tmp_path):
    first = _trainer(tmp_path, "first")
    assert first.stdout.readline() == "training\n"  # it holds the run's lock now
    second = _trainer(tmp_path, "second")
    waiting = second.stdout.readline()
    (tmp_path / "go").touch()  # only now may the first train
    out_second, err_second = second.communicate(timeout=120)
    out_first, err_first = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err_first + err_second
    assert waiting.endswith("another process trains it; waiting.\n"), waiting
    assert "training" not in out_second  # it read the first's result instead
    assert out_first.startswith("done") and out_second == out_first


def test_a_killed_trainer_leaves_the_run_to_the_next_process(tmp_path):
    holder = _trainer(tmp_path, "holder")  # no go: it waits, holding the lock
    assert holder.stdout.readline() == "training\n"
    holder.kill()  # mid-run: nothing stored, and the system releases its lock
    holder.wait()
    config = experiments.guided_config(TINY, 1.0)
    assert not experiments.is_stored(config, tmp_path / "runs")
    result = experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert result["key"] == config.key() and experiments.is_stored(config, tmp_path / "runs")
