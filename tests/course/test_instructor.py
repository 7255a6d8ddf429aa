"""docs/instructor.md: everything it names exists, its plans add up, its times are measured.

The header-time check compares the ``**Time:**`` line of every notebook with
docs/timings.json, which ``benchmarks/notebook_times.py --write docs/timings.json --stamp``
writes together with the headers and the table in docs/instructor.md.
"""

import importlib
import importlib.util
import itertools
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from agkit.course import run_all as run_course

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "instructor.md"
TEXT = DOC.read_text()
TIMINGS = ROOT / "docs" / "timings.json"
spec = importlib.util.spec_from_file_location(
    "notebook_times", ROOT / "benchmarks" / "notebook_times.py"
)
notebook_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebook_times)

MAKE_TARGETS = sorted(set(re.findall(r"`make ([\w-]+)", TEXT)))
AGKIT_NAMES = sorted(set(re.findall(r"\b(agkit(?:\.\w+)+)", TEXT)))
NOTEBOOK_NAMES = sorted(set(re.findall(r"\b(\d\d_[a-z_]+\.ipynb)", TEXT)))
FILES = sorted(set(re.findall(r"\b((?:benchmarks|tools|tests|docs)/[\w/-]+\.(?:py|md))", TEXT)))
PROFILE_NAMES = sorted(set(re.findall(r'(?:profile = "|PROFILE=)(\w+)', TEXT)))
COURSE = run_course.course_notebooks()  # what `make course` runs and times


def makefile_targets() -> set:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(dotted)


def test_the_doc_names_what_it_is_checked_against():
    # the parsers below must find something, or the checks after them test nothing
    assert {"setup", "cache", "course", "slides"} <= set(MAKE_TARGETS)
    assert "agkit.experiments.use_cache" in AGKIT_NAMES and len(NOTEBOOK_NAMES) >= 6
    assert "benchmarks/notebook_times.py" in FILES and "ci" in PROFILE_NAMES


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_target_exists(target):
    assert target in makefile_targets(), f"docs/instructor.md names `make {target}`"


@pytest.mark.parametrize("name", AGKIT_NAMES)
def test_agkit_name_exists(name):
    try:
        resolve(name)
    except (ModuleNotFoundError, AttributeError) as error:
        pytest.fail(f"docs/instructor.md names {name}, which does not exist ({error})")


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_named_notebook_exists(name):
    assert (ROOT / "notebooks" / name).is_file(), f"docs/instructor.md names notebooks/{name}"


@pytest.mark.parametrize("path", FILES)
def test_named_file_exists(path):
    assert (ROOT / path).is_file(), f"docs/instructor.md names {path}"


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_named_profile_exists(name):
    from agkit import experiments

    assert name in experiments.PROFILES


@pytest.mark.parametrize("path", run_course.course_notebooks(extensions=True), ids=lambda p: p.name)
def test_every_notebook_has_learning_goals(path):
    assert f"**{path.name} — " in TEXT, f"docs/instructor.md has no learning goals for {path.name}"


def plan(title: str) -> list[tuple[int, int]]:
    """The (start, end) minutes of each row of the plan table under the heading ``title``."""
    section = TEXT.split(f"### {title}", 1)[1].split("\n#", 1)[0]
    minutes = []
    for start, end in re.findall(r"^\| (\d:\d\d)–(\d:\d\d) \|", section, flags=re.MULTILINE):
        minutes.append(
            tuple(int(t.split(":")[0]) * 60 + int(t.split(":")[1]) for t in (start, end))
        )
    return minutes


@pytest.mark.parametrize("title, length", [("A 2-hour session", 120), ("A half-day session", 240)])
def test_plan_runs_without_gaps_for_its_length(title, length):
    rows = plan(title)
    assert rows and rows[0][0] == 0 and rows[-1][1] == length
    for (_, end), (start, _) in itertools.pairwise(rows):
        assert end == start, f"{title}: a row ends at {end} min, the next starts at {start}"
    assert all(start < end for start, end in rows)


# --- measured times: benchmarks/notebook_times.py ---------------------------------------

MEASURED = {
    "profile": "workshop",
    "machine": "laptop",
    "cores": 2,
    "date": "today",
    "load_before": "0.10, 0.20, 0.30",
    "load_after": "1.90, 1.00, 0.50",
    "cold_s": {"01_a": 59.0, "02_b": 61.0},
    "cached_s": {"01_a": 4.2, "02_b": 70.0},
}


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.5, "under a minute"),
        (59.9, "under a minute"),
        (60.0, "about a minute"),
        (61, "about 2 minutes"),
        (300, "about 5 minutes"),
        (301, "about 6 minutes"),
    ],
)
def test_minutes_are_rounded_up(seconds, text):
    assert notebook_times.minutes_text(seconds) == text


def test_header_line_states_profile_cores_and_cache():
    assert notebook_times.header_time(MEASURED, "02_b") == (
        "**Time:** about 2 minutes to run on a 2-core CPU (workshop profile, measured), "
        "about 2 minutes from the cache"
    )


def test_header_line_gives_idle_and_loaded_times_as_a_range():
    measured = dict(MEASURED, loaded_s={"02_b": 301.0}, load_processes=1)
    assert notebook_times.header_time(measured, "02_b") == (
        "**Time:** about 2 minutes to run on 2 idle cores, about 6 minutes with 1 other busy "
        "process (workshop profile, measured), about 2 minutes from the cache"
    )
    table = notebook_times.markdown_table(measured)
    assert "| 02_b | 61 s (about 2 minutes) | 301 s (about 6 minutes) | 70 s" in table


def test_busy_processes_load_the_cpu_and_stop():
    import multiprocessing
    import time

    import psutil

    with notebook_times.busy(1):
        (spinner,) = multiprocessing.active_children()
        time.sleep(0.6)
        used = psutil.Process(spinner.pid).cpu_times().user
    assert used > 0.2  # it kept a core busy
    assert not spinner.is_alive()


def test_stamp_rewrites_only_the_time_part(tmp_path):
    path = tmp_path / "01_a.ipynb"
    nbformat.write(
        new_notebook(
            cells=[
                new_markdown_cell(
                    "# 1 · A\n\nYou will.\n\n"
                    "**Time:** about 3 minutes on a laptop; plus the exercises.\n"
                    "\nMore."
                )
            ]
        ),
        path,
    )
    notebook_times.stamp_notebook(path, notebook_times.header_time(MEASURED, "01_a"))
    assert nbformat.read(path, as_version=4).cells[0].source == (
        "# 1 · A\n\nYou will.\n\n**Time:** under a minute to run on a 2-core CPU (workshop "
        "profile, measured), under a minute from the cache; plus the exercises.\n\nMore."
    )


def test_stamp_without_a_time_line_says_what_to_add(tmp_path):
    path = tmp_path / "01_a.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# 1 · A\n\nNo time here.")]), path)
    with pytest.raises(ValueError, match=r"01_a.ipynb: the first cell has no '\*\*Time:\*\*'"):
        notebook_times.stamp_notebook(path, "**Time:** x")


def test_table_goes_between_the_markers_only(tmp_path):
    doc = tmp_path / "instructor.md"
    begin, end = notebook_times.TABLE_BEGIN, notebook_times.TABLE_END
    doc.write_text(f"before\n{begin}\nOLD TABLE\n{end}\nafter")
    notebook_times.stamp_instructor(MEASURED, doc)
    text = doc.read_text()
    assert text.startswith(f"before\n{notebook_times.TABLE_BEGIN}\n| notebook |")
    assert text.endswith(f"{notebook_times.TABLE_END}\nafter") and "OLD TABLE" not in text
    assert "| 01_a | 59 s (under a minute) | not measured | 4 s (under a minute) |" in text
    assert "| **all** | **120 s (2.0 min)** | not measured | **74 s (1.2 min)** |" in text
    assert "load average 0.10, 0.20, 0.30 before and 1.90, 1.00, 0.50 after" in text
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="lacks the lines"):
        notebook_times.stamp_instructor(MEASURED, doc)


def test_make_course_log_is_read(tmp_path):
    log = tmp_path / "experiments.log"
    log.write_text(
        "running 01_a.ipynb (workshop) ...\n  done in 123 s -> build/course/01_a.ipynb\n"
        "running 02_b.ipynb (workshop) ...\n  FAILED: 02_b failed in cell 3\n"
        "running 03_c.ipynb (workshop) ...\n  done in 7 s -> build/course/03_c.ipynb\n"
    )
    assert notebook_times.read_log(log) == {"01_a": 123.0, "03_c": 7.0}
    assert notebook_times.log_loads(log) == ("not recorded", "not recorded")
    log.write_text(
        " 11:02:03 up 1:02,  0 user,  load average: 0.15, 0.30, 0.41\n"
        + log.read_text()
        + " 11:12:00 up 1:12,  0 user,  load average: 1.97, 1.50, 0.90\n"
    )
    assert notebook_times.log_loads(log) == ("0.15, 0.30, 0.41", "1.97, 1.50, 0.90")
    assert notebook_times.read_log(log) == {"01_a": 123.0, "03_c": 7.0}
    log.write_text("nothing here")
    with pytest.raises(ValueError, match="make course"):
        notebook_times.read_log(log)
    log.write_text(
        "running 01_a.ipynb (workshop) ...\n  done in 12 s -> build/course/01_a.ipynb\n"
        "background trainer: trained ahead with lambda 3: 40 of the 41 runs after it ...\n"
    )
    with pytest.raises(ValueError, match="AHEAD=0"):  # its times are not a student's
        notebook_times.read_log(log)


def test_doc_has_the_table_markers_once():
    assert TEXT.count(notebook_times.TABLE_BEGIN) == 1 and TEXT.count(notebook_times.TABLE_END) == 1


@pytest.mark.skipif(
    not TIMINGS.is_file(),
    reason="docs/timings.json not measured yet: run "
    "benchmarks/notebook_times.py --profile workshop --write docs/timings.json "
    "--stamp on an idle machine",
)
@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_notebook_header_time_matches_the_measurement(path):
    measured = json.loads(TIMINGS.read_text())
    assert path.stem in measured["cold_s"], f"docs/timings.json has no time for {path.name}"
    first = nbformat.read(path, as_version=4).cells[0].source
    line = notebook_times.TIME_LINE.search(first)
    assert line and line.group(0) == notebook_times.header_time(measured, path.stem), (
        f"{path.name}: header says {line and line.group(0)!r}; stamp it with "
        "benchmarks/notebook_times.py --stamp"
    )


@pytest.mark.skipif(not TIMINGS.is_file(), reason="docs/timings.json not measured yet")
def test_doc_table_matches_the_measurement():
    measured = json.loads(TIMINGS.read_text())
    table = TEXT.split(notebook_times.TABLE_BEGIN, 1)[1].split(notebook_times.TABLE_END, 1)[0]
    assert table.strip() == notebook_times.markdown_table(measured).strip()
