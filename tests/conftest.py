import os
import sys
import types

import pytest
import torch

# Two shared CPU cores: one thread per test process keeps timings sane and results exact.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def course_dirs(tmp_path_factory):
    """(executed notebooks, runs folder) of the course on the ci profile, one pair per session:
    the notebook tests execute into it, and the site test builds from what they left."""
    base = tmp_path_factory.mktemp("course")
    return base / "executed", base / "runs"


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def fake_colab(monkeypatch):
    """Install a recording ``google.colab`` (output, drive, files) into sys.modules."""
    calls = []
    google = types.ModuleType("google")
    package = types.ModuleType("google.colab")
    output = types.ModuleType("google.colab.output")
    drive = types.ModuleType("google.colab.drive")
    files = types.ModuleType("google.colab.files")
    output.enable_custom_widget_manager = lambda: calls.append(("enable_custom_widget_manager",))
    drive.mount = lambda where: calls.append(("mount", where))
    files.download = lambda path: calls.append(("download", path))
    files.uploads = {}
    files.upload = lambda: calls.append(("upload",)) or dict(files.uploads)
    google.colab = package
    package.output, package.drive, package.files = output, drive, files
    for name, module in [
        ("google", google),
        ("google.colab", package),
        ("google.colab.output", output),
        ("google.colab.drive", drive),
        ("google.colab.files", files),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    package.calls = calls
    return package


@pytest.fixture
def not_colab(monkeypatch):
    for name in ["google.colab", "google.colab.output", "google.colab.drive", "google.colab.files"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
