"""The widget under Colab's ipywidgets 7.7.1: every fast test of tests/widgets/ passes there."""

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- ipywidgets 7.7
IPYWIDGETS_7 = "7.7.1"  # what Colab ships
LOCAL_ONLY = (
    "ipywidgets",
    "widgetsnbextension",
    "ipython_genutils",
    "ipython-genutils",
    "pip",
    "setuptools",
    "_distutils_hack",
    "distutils-precedence",
    "__editable__",
    "agkit",
    "__pycache__",
)
NO_REGISTRY = (
    "Could not find a version",
    "No matching distribution",
    "Failed to establish",
    "Temporary failure in name resolution",
    "ProxyError",
    "ConnectionError",
    "Network is unreachable",
    "Max retries exceeded",
)


@pytest.mark.slow
def test_widget_tests_pass_under_ipywidgets_7(tmp_path):
    """Run the fast widget tests (tests/widgets/) with Colab's ipywidgets 7.7.1.

    The environment gets ipywidgets 7.7.1 (and its two small companions) from the package
    registry; everything else -- torch, numpy, anywidget, pytest ... -- is borrowed from this
    environment through a folder of symbolic links that a .pth file puts on sys.path *after*
    the new environment's own packages, so the borrowed ipywidgets 8 can never win.
    """
    import subprocess
    import sysconfig

    venv = tmp_path / "ipyw7"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = subprocess.run(
        [python, "-c", purelib], check=True, capture_output=True, text=True
    ).stdout.strip()
    borrowed = tmp_path / "borrowed"
    borrowed.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        if not entry.name.lower().startswith(LOCAL_ONLY) and entry.suffix != ".pth":
            (borrowed / entry.name).symlink_to(entry)
    (Path(own) / "borrowed.pth").write_text(f"{borrowed}\n")

    # --no-deps: pip only adds these three and never touches a borrowed package
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            f"ipywidgets=={IPYWIDGETS_7}",
            "widgetsnbextension~=3.6.0",
            "ipython_genutils~=0.2.0",
        ],
        capture_output=True,
        text=True,
    )
    if install.returncode and any(marker in install.stderr for marker in NO_REGISTRY):
        pytest.skip(
            f"pip could not reach the package registry for ipywidgets {IPYWIDGETS_7}: "
            f"{install.stderr.strip().splitlines()[-1]}"
        )
    assert install.returncode == 0, install.stderr

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    # one interpreter start: say which ipywidgets it has, then run the tests
    script = (
        "import sys, ipywidgets, pytest; print('ipywidgets', ipywidgets.__version__, "
        "ipywidgets.__file__, flush=True); sys.exit(pytest.main(sys.argv[1:]))"
    )
    run = subprocess.run(
        [
            python,
            "-c",
            script,
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            str(Path(__file__).parent),  # every widget test
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    _, version, location = run.stdout.splitlines()[0].split()
    assert version == IPYWIDGETS_7 and location.startswith(own), run.stdout.splitlines()[0]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))
    assert passed >= 20 and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-500:]
