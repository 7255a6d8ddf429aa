"""Seconds each course notebook takes as a student meets it: in order, from a fresh runs folder.

    python benchmarks/notebook_times.py --profile ci
    python benchmarks/notebook_times.py --profile workshop --write docs/timings.json --stamp
    python benchmarks/notebook_times.py --from-log course.log --profile workshop --write ...

Every notebook of ``notebooks/`` runs with papermill (as ``make course`` runs it: notebook 2
with the simulated annotator) into a temporary folder, all sharing one fresh runs folder, so
notebook 3 reuses the baseline notebook 1 trained, exactly as in a workshop. Then the same
notebooks run a second time on the now filled runs folder: that is the time with a cache
(``make cache`` / ``agkit.experiments.use_cache``). The table gives both, and the load average
(``uptime``) before and after, because on a shared machine the load changes every number.

``--load N`` times the notebooks a third time, from another fresh runs folder, while N
other processes keep a core each busy (a student's browser, a video call): the headers then
give both times, on idle cores and under that load, as a range a workshop can plan with.

``--from-log`` reads the "done in N s" lines of a ``make course AHEAD=0`` log instead of
running anything (without AHEAD=0 the course trains later notebooks' runs in the background,
so no notebook takes the time a student meets). Run ``make clean`` first, so that the runs
folder starts empty, and ``uptime`` before and after it into the same log, for the load.
``--cached-log`` reads those of a second ``make course`` right after it (every run cached).
``--write`` saves the measurements as JSON (the file the header-time test compares the
notebooks with); ``--stamp`` writes the measured time line into the first cell of every
notebook and the table into docs/instructor.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
INSTRUCTOR = ROOT / "docs" / "instructor.md"
TABLE_BEGIN = "<!-- BEGIN MEASURED TIMES (benchmarks/notebook_times.py --stamp) -->"
TABLE_END = "<!-- END MEASURED TIMES -->"
TIME_LINE = re.compile(r"\*\*Time:\*\*[^;\n]*")


def load_average() -> str:
    """The three load averages as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def course_notebooks(only=None, folder: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks ``make course`` runs (not the extensions such as 06, which a workshop
    does not time), or any of ``folder``'s whose names start with one of ``only``."""
    from agkit.course.run_all import course_notebooks as notebooks_of

    notebooks = notebooks_of(extensions=bool(only), folder=folder)
    return [n for n in notebooks if not only or any(n.name.startswith(p) for p in only)]


def time_notebooks(notebooks, profile: str, out: Path, runs: Path, device=None) -> dict:
    """Execute ``notebooks`` in order into ``out`` with one runs folder; seconds by stem."""
    from agkit.course import run_all as run_course

    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for notebook in notebooks:
        started = time.perf_counter()
        parameters = run_course.course_parameters(profile, runs, notebook)
        if device is not None:
            parameters["device"] = device
        run_course.execute(notebook, out, parameters)
        seconds[notebook.stem] = round(time.perf_counter() - started, 1)
        print(
            f"  {notebook.stem}: {seconds[notebook.stem]:.0f} s (load {load_average()})", flush=True
        )
    return seconds


def _spin() -> None:  # pragma: no cover - runs in a child process until terminated
    while True:
        pass


@contextlib.contextmanager
def busy(processes: int):
    """Keep ``processes`` other processes spinning on the CPU while the block runs."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()


def read_log(log: Path) -> dict:
    """Seconds by notebook stem from the ``running X ... / done in N s`` lines of make course."""
    seconds, current, text = {}, None, log.read_text()
    if "background trainer:" in text:
        raise ValueError(
            f"{log} is from a `make course` that trained later notebooks' runs ahead in the "
            f"background, so each notebook's time there is not what a student meets; run "
            f"`make clean` and `make course AHEAD=0` into the log."
        )
    for line in text.splitlines():
        started = re.match(r"running (\S+)\.ipynb", line.strip())
        done = re.match(r"done in (\d+(?:\.\d+)?) s", line.strip())
        if started:
            current = started.group(1)
        elif done and current:
            seconds[current] = float(done.group(1))
    if not seconds:
        raise ValueError(
            f"{log} holds no 'running NAME.ipynb' / 'done in N s' lines of "
            f"`make course`; pass the saved output of `make course`."
        )
    return seconds


def log_loads(log: Path) -> tuple[str, str]:
    """The first and last load averages that ``uptime`` wrote into a log ("not recorded")."""
    found = re.findall(r"load average: ([\d.]+, [\d.]+, [\d.]+)", log.read_text())
    return (found[0], found[-1]) if found else ("not recorded", "not recorded")


def minutes_text(seconds: float) -> str:
    """How a header states a measured time: whole minutes rounded up, or "under a minute"."""
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    return "about a minute" if minutes == 1 else f"about {minutes} minutes"


def header_time(measurement: dict, stem: str) -> str:
    """The time line of a notebook's first cell, from the measurements of ``--write``.

    Everything after it in the paragraph (from the first ";") is free text, e.g. "; plus the
    exercises".
    """
    cold = measurement["cold_s"][stem]
    loaded = measurement.get("loaded_s", {}).get(stem)
    if loaded is None:
        text = (
            f"**Time:** {minutes_text(cold)} to run on a {measurement['cores']}-core CPU "
            f"({measurement['profile']} profile, measured)"
        )
    else:
        others = measurement["load_processes"]
        text = (
            f"**Time:** {minutes_text(cold)} to run on {measurement['cores']} idle cores, "
            f"{minutes_text(loaded)} with {others} other busy process{'es' if others > 1 else ''} "
            f"({measurement['profile']} profile, measured)"
        )
    cached = measurement.get("cached_s", {}).get(stem)
    if cached is not None:
        text += f", {minutes_text(cached)} from the cache"
    return text


def markdown_table(measurement: dict) -> str:
    cold, cached = measurement["cold_s"], measurement.get("cached_s", {})
    loaded = measurement.get("loaded_s", {})
    lines = [
        "| notebook | fresh runs folder | under load | from the cache |",
        "|---|---:|---:|---:|",
    ]

    def cell(times: dict, stem: str) -> str:
        return (
            f"{times[stem]:.0f} s ({minutes_text(times[stem])})"
            if stem in times
            else "not measured"
        )

    def total(times: dict) -> str:
        return (
            f"**{sum(times.values()):.0f} s ({sum(times.values()) / 60:.1f} min)**"
            if times
            else "not measured"
        )

    for stem in cold:
        lines.append(
            f"| {stem} | {cell(cold, stem)} | {cell(loaded, stem)} | {cell(cached, stem)} |"
        )
    lines.append(f"| **all** | {total(cold)} | {total(loaded)} | {total(cached)} |")
    lines.append("")
    if loaded:
        lines.append(
            f"Under load: {measurement['load_processes']} other process(es) kept a core each "
            f"busy while the notebooks ran from another fresh runs folder."
        )
    lines.append(
        f"Measured {measurement['date']} on {measurement['machine']} "
        f"({measurement['cores']} cores), {measurement['profile']} profile, "
        f"load average {measurement['load_before']} before and "
        f"{measurement['load_after']} after."
    )
    return "\n".join(lines)


def stamp_instructor(measurement: dict, path: Path = INSTRUCTOR) -> None:
    """Replace the table between the two markers of docs/instructor.md."""
    text = path.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(
            f"{path} lacks the lines {TABLE_BEGIN!r} and {TABLE_END!r}; put them "
            f"back around the measured-times table."
        )
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    path.write_text(f"{head}{TABLE_BEGIN}\n{markdown_table(measurement)}\n{TABLE_END}{tail}")


def stamp_notebook(path: Path, line: str) -> None:
    """Write ``line`` over the ``**Time:** ...`` part of the notebook's first cell."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0]
    if not TIME_LINE.search(first.source):
        raise ValueError(
            f"{path.name}: the first cell has no '**Time:**' line to stamp; add "
            f"one (e.g. '**Time:** ...; plus the exercises.') and stamp again."
        )
    first.source = TIME_LINE.sub(lambda _: line, first.source, count=1)
    nbformat.write(notebook, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", choices=["ci", "workshop", "full"])
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 03")
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=NOTEBOOKS,
        help="the folder of the course notebooks (default: notebooks/)",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-cached", action="store_true", help="skip the second (cached) pass")
    parser.add_argument(
        "--load", type=int, default=0, help="also time a fresh pass with N other busy processes"
    )
    parser.add_argument(
        "--from-log", type=Path, help="read the times from a `make course` log (fresh runs folder)"
    )
    parser.add_argument(
        "--cached-log",
        type=Path,
        help="with --from-log: the log of a second `make course` (cached runs)",
    )
    parser.add_argument(
        "--machine",
        default=f"{platform.system()} {platform.machine()}",
        help="how the table names the machine, e.g. 'a 2-core laptop'",
    )
    parser.add_argument("--write", type=Path, help="save the measurements as JSON here")
    parser.add_argument(
        "--stamp",
        action="store_true",
        help="write the time line into every notebook header and the table "
        "into docs/instructor.md (needs --write's measurements)",
    )
    args = parser.parse_args(argv)
    unknown = [
        prefix for prefix in args.only or () if not course_notebooks([prefix], args.notebooks)
    ]
    if unknown:
        parser.error(
            f"--only {' '.join(unknown)} names no notebook in {args.notebooks}; give number "
            "prefixes such as 01 03"
        )

    measurement = {
        "profile": args.profile,
        "machine": args.machine,
        "cores": os.cpu_count(),
        "load_before": load_average(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    print(f"uptime: {uptime()}")
    from agkit.course.run_all import NotebookFailed

    if args.from_log:
        measurement["cold_s"] = read_log(args.from_log)
        measurement["load_before"], load_after = log_loads(args.from_log)
        if args.cached_log:
            measurement["cached_s"] = read_log(args.cached_log)
        return finish(measurement, args, load_after)
    try:
        with tempfile.TemporaryDirectory(prefix="agkit-times-") as scratch:
            runs = Path(scratch) / "runs"
            notebooks = course_notebooks(args.only, args.notebooks)
            print(f"fresh runs folder, {args.profile} profile:", flush=True)
            measurement["cold_s"] = time_notebooks(
                notebooks, args.profile, Path(scratch) / "cold", runs, args.device
            )
            if not args.no_cached:
                print("again, from the runs the first pass stored:", flush=True)
                measurement["cached_s"] = time_notebooks(
                    notebooks, args.profile, Path(scratch) / "cached", runs, args.device
                )
            if args.load:
                print(f"fresh runs folder again, {args.load} other busy process(es):", flush=True)
                measurement["load_processes"] = args.load
                with busy(args.load):
                    measurement["loaded_s"] = time_notebooks(
                        notebooks,
                        args.profile,
                        Path(scratch) / "loaded",
                        Path(scratch) / "runs-loaded",
                        args.device,
                    )
    except NotebookFailed as error:
        print(f"error: {error}; no time is written for a notebook that fails.", file=sys.stderr)
        return 1
    return finish(measurement, args)


def finish(measurement: dict, args, load_after: str | None = None) -> int:
    """Print the table; write the JSON and stamp the headers and docs when asked."""
    measurement["load_after"] = load_after or load_average()
    print(f"uptime: {uptime()}")
    print(markdown_table(measurement))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(measurement, indent=2) + "\n")
        print(f"saved {args.write}")
    if args.stamp:
        for stem in measurement["cold_s"]:
            stamp_notebook(args.notebooks / f"{stem}.ipynb", header_time(measurement, stem))
        stamp_instructor(measurement)
        print("stamped the notebook headers and docs/instructor.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
