"""Write the instructor's answer key, docs/answers.md, from the solution notebooks.

    python tools/answer_key.py            # rewrite docs/answers.md
    python tools/answer_key.py --check    # exit 1 when docs/answers.md is out of date

The key is built from the cells the notebooks tag (see docs/exercises.md): every cell
tagged ``exercise`` gives its solution (the code between ``# BEGIN SOLUTION`` and
``# END SOLUTION``, shown in its cell) after the ``exercise-intro`` that sets it; every
``questionnaire`` cell is paired, question by question, with the ``answers`` cell after it.
The last section is the range each measured number took across seeds and thread counts,
from docs/answer_ranges.json (``benchmarks/answer_ranges.py``).

Nothing in the key is written by hand, so it cannot drift from the notebooks:
tests/test_answer_key.py fails when the committed file differs from a fresh build. The key
is committed rather than built into build/ by ``make course``: an instructor reads it on
GitHub before installing anything, and its ranges take many trainings to measure, so a
benchmark measures them once instead of every course run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from agkit.course.student import (
    BEGIN,
    END,
    MarkerError,
    UnreadableNotebook,
    read_notebook,
    split_solution,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KEY = ROOT / "docs" / "answers.md"
RANGES = ROOT / "docs" / "answer_ranges.json"
ITEM = re.compile(r"^(\d+)\.\s+(.*)$")
METRIC_NAMES = {
    "accuracy_shifted": "accuracy, shifted test split",
    "accuracy_id": "accuracy, in-distribution test split",
    "auc_shifted": "AUC, shifted test split",
    "mass_in_mask": "mass in mask, shifted test split",
    "pointing_game_shifted": "pointing game, shifted test split",
    "accuracy_val": "accuracy, validation split",
    "mass_in_mask_val": "mass in mask, validation split",
}


class AnswerKeyError(ValueError):
    """A notebook's tagged cells cannot make an answer key; the message names the cell."""


def tags(cell) -> set:
    return set(cell.metadata.get("tags", []))


def solution_code(cell, where: str) -> str:
    """The exercise cell without its marker lines. The markers are read by the one marker
    parser, ``agkit.course.student.split_solution`` (what ``make student`` blanks is what the key
    shows); raises AnswerKeyError when they do not pair up, look wrong, or are missing."""
    try:
        _, solution = split_solution(cell.source, where)
    except MarkerError as error:
        raise AnswerKeyError(f"{error} (the markers must pair up)") from None
    if not solution:
        raise AnswerKeyError(
            f"{where}: an `exercise` cell needs its solution between "
            f"'{BEGIN}' and '{END}' lines that pair up."
        )
    lines = cell.source.splitlines()
    return "\n".join(line for line in lines if line.strip() not in (BEGIN, END)).strip()


def numbered_items(text: str) -> dict[int, str]:
    """The numbered list items of a markdown text, continuation lines joined: {n: text}."""
    items, current = {}, None
    for line in text.splitlines():
        match = ITEM.match(line.strip())
        if match and not line.startswith("    "):
            current = int(match.group(1))
            items[current] = match.group(2).strip()
        elif current is not None and line.strip() and not line.strip().startswith("<"):
            items[current] += " " + line.strip()
    return items


def strip_heading(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()


def notebook_section(path: Path) -> str:
    """The answer key of one notebook: its exercises' solutions and its questionnaire's answers."""
    cells = read_notebook(path).cells
    title = cells[0].source.splitlines()[0].lstrip("# ").strip()
    parts, intro = [f"## {title}", "", f"`notebooks/{path.name}`", ""], None
    exercises = questions = 0
    for index, cell in enumerate(cells):
        where = f"{path.name}, cell {index}"
        if "exercise-intro" in tags(cell):
            intro = strip_heading(cell.source)
        elif "exercise" in tags(cell):
            exercises += 1
            parts += [f"### Exercise {exercises}", ""]
            if intro:
                parts += [intro, ""]
            parts += ["```python", solution_code(cell, where), "```", ""]
            intro = None
        elif "questionnaire" in tags(cell):
            following = cells[index + 1] if index + 1 < len(cells) else None
            if following is None or "answers" not in tags(following):
                raise AnswerKeyError(
                    f"{where}: a `questionnaire` cell must be followed by a cell tagged `answers`."
                )
            asked, answered = numbered_items(cell.source), numbered_items(following.source)
            if set(asked) != set(answered):
                raise AnswerKeyError(
                    f"{where}: questions {sorted(asked)} but answers "
                    f"{sorted(answered)} in the next cell; number them alike."
                )
            questions += len(asked)
            parts += ["### Questionnaire", ""]
            for number in sorted(asked):
                parts += [f"{number}. {asked[number]}", "", f"   *Answer:* {answered[number]}", ""]
    if not exercises and not questions:
        parts += ["No tagged exercises or questionnaire in this notebook.", ""]
    return "\n".join(parts)


def spread(rows: list[dict], metric: str, method: str) -> str:
    values = [row[metric] for row in rows if row["method"] == method and metric in row]
    if not values:
        return "not measured"
    return f"{min(values):.2f} – {max(values):.2f}"


def machine_difference(rows: list[dict], metric: str) -> str:
    """Largest change of one run's score (same method and seed) between thread counts."""
    by_run = {}
    for row in rows:
        if metric in row:
            by_run.setdefault((row["method"], row["seed"]), []).append(row[metric])
    changes = [max(v) - min(v) for v in by_run.values() if len(v) > 1]
    return f"{max(changes):.3f}" if changes else "not measured"


def ranges_section(ranges: dict) -> str:
    """One table of min-max per score for one profile's measurement."""
    rows = ranges["rows"]
    lambdas = ", ".join(
        f"{lam:g} with {threads} thread(s)" for threads, lam in ranges["lambda"].items()
    )
    parts = [
        f"### {ranges['profile']} profile",
        "",
        f"Trained with {', '.join(map(str, ranges['threads']))} thread(s) for seeds "
        + f"{', '.join(map(str, ranges['seeds']))}; lambda chosen on validation: {lambdas}.",
        "",
        "| score | baseline (min – max) | guided (min – max) | largest change between "
        + "thread counts |",
        "|---|---|---|---|",
    ]
    for metric, name in METRIC_NAMES.items():
        if any(metric in row for row in rows):
            parts.append(
                f"| {name} | {spread(rows, metric, 'baseline')} | "
                f"{spread(rows, metric, 'guided')} | "
                f"{machine_difference(rows, metric)} |"
            )
    return "\n".join(parts) + "\n"


RANGES_HEAD = """## Measured numbers: the range across seeds and machines

The main comparison of notebook 3 (lambda chosen on validation, then baseline and guided
over the profile's seeds), trained by `benchmarks/answer_ranges.py` once per thread count,
each time from scratch. A thread count changes the order of floating-point sums the way
another machine or library build does, so the last column is the spread to expect between
machines for the same seed; the min – max columns include both seeds and thread counts.
A student's number well outside a range is worth a look (another profile, seed or setting);
inside it, differences between students are chance. Where a profile was trained with one
thread count only, its last column says "not measured"; the other profile's column gives
the size of the differences between machines.
"""


def build(notebooks: Path = NOTEBOOKS, ranges: Path = RANGES) -> str:
    """The whole answer key as markdown."""
    if not ranges.is_file():
        raise FileNotFoundError(
            f"{ranges} is missing; measure it with "
            f"`python benchmarks/answer_ranges.py --out {ranges}`."
        )
    paths = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {notebooks}")
    head = (
        "# Answer key\n\n"
        "Generated by `python tools/answer_key.py` from the solution notebooks and "
        "docs/answer_ranges.json; do not edit by hand (tests/test_answer_key.py checks "
        "it is current). The solutions are the notebooks' own, so they are public with "
        "the repository: hand students the versions in `notebooks/student/`.\n"
    )
    sections = [notebook_section(path) for path in paths]
    measured = json.loads(ranges.read_text())
    tables = [ranges_section(measured[name]) for name in sorted(measured)]
    return "\n".join([head, *sections, RANGES_HEAD, *tables])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    parser.add_argument("--ranges", type=Path, default=RANGES)
    parser.add_argument("--out", type=Path, default=KEY)
    parser.add_argument("--check", action="store_true", help="only compare with --out")
    args = parser.parse_args(argv)
    try:
        text = build(args.notebooks, args.ranges)
    except (AnswerKeyError, FileNotFoundError, UnreadableNotebook) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if not args.out.is_file() or args.out.read_text() != text:
            print(f"{args.out} is out of date; run `python tools/answer_key.py`.", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
