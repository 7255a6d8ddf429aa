"""Installing on Colab and Binder: the install cell leaves Colab's pins alone, and Binder
needs no install cell.

For the install, a virtual environment holds Colab's pinned Jupyter stack, with the heavy
packages Colab ships (torch, numpy, ...) lent from this interpreter's site-packages.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import venv
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agkit.course import stamp

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]

# What the `google-colab` package pins, plus the ipywidgets the runtime ships.
COLAB_PINS = {
    "ipykernel": "6.17.1",
    "ipython": "7.34.0",
    "notebook": "6.5.7",
    "pandas": "2.2.2",
    "tornado": "6.4.2",
    "requests": "2.32.3",
    "ipywidgets": "7.7.1",
}
# Heavy packages Colab has preinstalled; the simulated runtime borrows ours.
COLAB_PREINSTALLED = [
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "matplotlib",
    "scikit-learn",
    "pillow",
    "seaborn",
    "tqdm",
]


# ---------------------------------------------------------------------------------------
# dependency ranges and Binder


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_base_dependencies_accept_every_colab_pin():
    base = [Requirement(r) for r in _project()["dependencies"]]
    for requirement in base:
        name = canonicalize_name(requirement.name)
        if name in COLAB_PINS:
            assert requirement.specifier.contains(COLAB_PINS[name]), (requirement, COLAB_PINS)
    names = {canonicalize_name(r.name) for r in base}
    assert not names & {
        "jupyterlab",
        "notebook",
        "ipykernel",
        "papermill",
        "tornado",
        "jupyter-client",
    }, "the kit alone must not bring a Jupyter front end"


def _conda_entries(path):
    return yaml.safe_load(path.read_text())["dependencies"]


def test_binder_environment_is_the_kits_runtime_and_course_dependencies():
    entries = _conda_entries(ROOT / "binder" / "environment.yml")
    assert not any(isinstance(e, dict) for e in entries), "Binder has no source tree yet: no pip"
    found = {}
    for entry in entries:
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", entry.replace(" ", "")).groups()
        found[name] = spec
    project = _project()
    expected = {"python": "=3.11", "pip": ""}
    for text in project["dependencies"] + project["optional-dependencies"]["course"]:
        requirement = Requirement(text)
        name = {"torch": "pytorch"}.get(requirement.name, requirement.name)
        expected[name] = str(requirement.specifier)
    assert found == expected


def test_binder_installs_the_checkout_after_the_environment():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK)
    assert "pip install --editable ." in post_build
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"({stamp.binder_url()}" in readme


# ---------------------------------------------------------------------------------------
# THE test: notebook 01's install cell in a runtime with Colab's pins


def _index_reachable():
    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=10).close()
        return True
    except OSError:
        return False


def _closure(seeds, exclude):
    """Installed distributions that ``seeds`` need, with their extras' needs; canonical names."""
    todo, seen = [(canonicalize_name(s), ("",)) for s in seeds], {}
    while todo:
        name, extras = todo.pop()
        if name in exclude:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        new = set(extras) - seen.get(name, set())
        if not new:
            continue
        seen.setdefault(name, set()).update(new)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(
                requirement.marker.evaluate({"extra": e}) for e in new
            ):
                todo.append((canonicalize_name(requirement.name), ("", *requirement.extras)))
    return sorted(seen)


def _lend_packages(names, shelf):
    """Symlink each distribution's top-level files and its .dist-info into ``shelf``."""
    shelf.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if not top.endswith(".pth") and (base / top).exists() and not (shelf / top).exists():
                (shelf / top).symlink_to(base / top)


def _versions(python, names):
    script = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    return json.loads(
        subprocess.run(
            [python, "-c", script, *names], check=True, capture_output=True, text=True
        ).stdout
    )


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _install_command_of_notebook_01(source_uri):
    [path] = (ROOT / "notebooks").glob("01_*.ipynb")
    cells = [("".join(c["source"])) for c in _cells(path) if c["cell_type"] == "code"]
    install = [s for s in cells if "google.colab" in s and "pip install" in s]
    assert install, f"{path.name} has no Colab install cell"
    [line] = [ln.strip() for ln in install[0].splitlines() if ln.strip().startswith("%pip ")]
    args = shlex.split(line)[1:]
    kit = [i for i, a in enumerate(args) if "git+https://github.com/" in a]
    assert len(kit) == 1, f"expected one git requirement in {line!r}"
    args[kit[0]] = re.sub(r"git\+https://github\.com/\S+", source_uri, args[kit[0]])
    return line, args


@pytest.mark.slow
def test_notebook_01_install_cell_leaves_colab_pins_unchanged(tmp_path):
    missing = [n for n in COLAB_PREINSTALLED if _closure([n], set()) == []]
    if missing:
        pytest.skip(f"{missing} are not installed here, so they cannot stand in for Colab's")
    if not _index_reachable():
        pytest.skip("the package index cannot be reached; this test installs Colab's pins from it")
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    runtime = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(runtime)
    python = str(runtime / "bin" / "python")

    def pip(*args, check=True):
        done = subprocess.run(
            [python, "-m", "pip", *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert not check or done.returncode == 0, f"pip {args}:\n{done.stdout}\n{done.stderr}"
        return done

    # Colab's preinstalled scientific stack: this interpreter's copies, lent via a .pth file.
    pip("uninstall", "-y", "-q", "setuptools")  # venv's old copy would hide Colab's newer one
    lent = _closure(COLAB_PREINSTALLED, exclude=set(COLAB_PINS))
    _lend_packages(lent, tmp_path / "preinstalled")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "colab-preinstalled.pth").write_text(f"{tmp_path / 'preinstalled'}\n")
    pins = pip(
        "install",
        "-q",
        "--only-binary=:all:",
        *[f"{name}=={version}" for name, version in COLAB_PINS.items()],
        check=False,
    )
    if pins.returncode and sys.version_info >= (3, 13):
        pytest.skip(
            "Colab's pins (pandas 2.2.2 among them) have no wheels for Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; Colab runs 3.12"
        )
    assert pins.returncode == 0, f"installing Colab's pins failed:\n{pins.stderr}"
    watched = [*COLAB_PINS, *COLAB_PREINSTALLED]
    before = _versions(python, watched)
    assert before == {**before, **COLAB_PINS}
    baseline = pip("check", check=False)
    assert baseline.returncode == 0, f"the simulated Colab is broken already:\n{baseline.stdout}"
    prepared = time.monotonic()

    # Notebook 01's install cell, with the repository replaced by a copy of this checkout.
    source = tmp_path / "agkit-source"
    shutil.copytree(ROOT / "agkit", source / "agkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    line, args = _install_command_of_notebook_01(source.as_uri())
    pip(*args)
    pip("install", "-q", "anywidget")  # the widget's coming front end must fit the pins too
    installed = time.monotonic()

    after = _versions(python, watched)
    report = "\n".join(f"  {n:14} {before[n]!s:>10} -> {after[n]}" for n in watched)
    print(
        f"\n{line}\n{report}\nsimulated runtime {prepared - started:.0f} s, "
        f"install cell + anywidget {installed - prepared:.0f} s"
    )
    assert after == before, f"the install cell changed Colab's packages:\n{report}"
    check = pip("check", check=False)
    assert check.returncode == 0, f"pip check after the install cell:\n{check.stdout}"
    script = "import agkit, agkit.widgets, agkit.course.colab, anywidget; print(agkit.__file__)"
    imported = subprocess.run(
        [python, "-c", script], check=False, capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    installed_package = Path(imported.stdout.strip()).parent
    assert installed_package.is_relative_to(runtime), installed_package

    def package_files(folder):
        return {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    lost = package_files(source / "agkit") - package_files(installed_package)
    assert not lost, f"files of the package that a git install leaves out: {sorted(lost)}"
