"""pyproject.toml and environment.yml declare the same dependencies; CI runs README's command."""

import re
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def split(requirement):
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", requirement.replace(" ", "")).groups()
    return name.lower(), spec.split(";")[0]


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    found = {}
    todo, seen = project["dependencies"] + extras["course"] + extras["dev"], set()
    while todo:
        requirement = todo.pop(0)
        if requirement.startswith("agkit["):  # an extra of the kit's own: its requirements
            for extra in re.findall(r"[\w-]+", requirement[len("agkit[") :]):
                if extra not in seen:
                    seen.add(extra)
                    todo += extras[extra]
            continue
        name, spec = split(requirement)
        if not requirement.startswith("tomli"):
            found[CONDA_NAMES.get(name, name)] = spec
    return found


def conda_requirements():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, str) and entry not in ("pip",) and not entry.startswith("python"):
            name, spec = split(entry)
            found[name] = spec
        elif isinstance(entry, dict):  # the pip section: what conda-forge lacks
            for requirement in entry["pip"]:
                if not requirement.startswith("-e"):
                    name, spec = split(requirement)
                    found[name] = spec
    return found


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    assert conda_requirements() == pyproject_requirements()


def test_torch_is_a_range_not_a_pin():
    requirements = pyproject_requirements()
    assert requirements["pytorch"].startswith(">=") and requirements["torchvision"].startswith(">=")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert "make test" in ci
