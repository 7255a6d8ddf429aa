"""agkit.course.notebook: the one-line setup of every course notebook, and its progress bars."""

from pathlib import Path

import pytest
import torch

from agkit import experiments
from agkit.course import colab, notebook
from agkit.engine import progress


@pytest.fixture
def restore_bars():
    # setup() makes every later bar of the kit a text bar; undo it after each test
    yield
    progress.use_text_bars(False)


def test_setup_returns_what_a_notebook_needs(tmp_path, monkeypatch, restore_bars, capsys):
    monkeypatch.chdir(tmp_path)
    nb = notebook.setup(profile="ci", seed=3, runs_dir="runs", device="cpu")
    assert nb.profile is experiments.get_profile("ci")
    assert nb.device == torch.device("cpu")
    assert nb.runs_dir == tmp_path / "runs" and nb.runs_dir.is_dir()  # absolute, created
    assert nb.seed == 3
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "profile=ci" in printed and str(nb.runs_dir) in printed
    assert isinstance(progress.bar(total=1), progress.TextBar)


def test_setup_seeds_torch(tmp_path, restore_bars):
    notebook.setup(profile="ci", seed=5, runs_dir=tmp_path, quiet=True)
    first = torch.rand(3)
    notebook.setup(profile="ci", seed=5, runs_dir=tmp_path, quiet=True)
    assert torch.equal(first, torch.rand(3))


def test_setup_without_runs_dir_uses_the_kits_default_from_anywhere(
    tmp_path, monkeypatch, restore_bars, not_colab
):
    monkeypatch.chdir(tmp_path)
    nb = notebook.setup(profile="ci", quiet=True)
    assert nb.runs_dir == colab.default_runs_dir() == Path(notebook.__file__).parents[2] / "runs"


def test_setup_on_colab_enables_the_widget_manager_and_keeps_runs_on_drive(
    fake_colab, restore_bars, tmp_path, monkeypatch
):
    monkeypatch.setattr(colab, "DRIVE_RUNS_DIR", tmp_path / "drive-runs")
    nb = notebook.setup(profile="ci", drive=True, quiet=True)
    assert nb.runs_dir == tmp_path / "drive-runs"
    assert ("enable_custom_widget_manager",) in fake_colab.calls
    assert ("mount", str(colab.DRIVE_MOUNT)) in fake_colab.calls


def test_bad_arguments_are_named(tmp_path, restore_bars):
    with pytest.raises(ValueError, match="unknown profile 'big'"):
        notebook.setup(profile="big", runs_dir=tmp_path, quiet=True)
    for seed in ("0", -1, 1.5):  # SynthFrac draws from seeds >= 0 only
        with pytest.raises(ValueError, match=r"seed must be a whole number >= 0"):
            notebook.setup(profile="ci", seed=seed, runs_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="is not a device torch knows"):
        notebook.setup(profile="ci", device="tpu", runs_dir=tmp_path, quiet=True)
    a_file = tmp_path / "runs.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file; pass a folder"):
        notebook.setup(profile="ci", runs_dir=a_file, quiet=True)
    with pytest.raises(ValueError, match="cannot be created .*pass a folder you can write to"):
        notebook.setup(profile="ci", runs_dir=a_file / "runs", quiet=True)  # under a file
    assert a_file.read_text() == "not a folder"  # left alone


def test_setup_on_the_cpu_trains_with_one_thread_like_the_cached_runs(tmp_path, restore_bars):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        notebook.setup(profile="ci", runs_dir=tmp_path, device="cpu", quiet=True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
