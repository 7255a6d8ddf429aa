"""The answer key: built from the tagged cells of the solution notebooks, never stale."""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("answer_key", ROOT / "tools" / "answer_key.py")
answer_key = importlib.util.module_from_spec(spec)
spec.loader.exec_module(answer_key)


def _cell(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def _lesson(exercise_source, answers="1. Yes, because.\n2. Four.\n   It is 2 + 2."):
    return new_notebook(
        cells=[
            new_markdown_cell("# 7 · A lesson\n\nWhat you will do."),
            _cell(
                new_markdown_cell("## 2 · Write it\n**Exercise 1 · Add.** Add two numbers."),
                "exercise-intro",
            ),
            _cell(new_code_cell(exercise_source), "exercise"),
            _cell(new_code_cell("exercises.check_add(add)"), "check"),
            _cell(
                new_markdown_cell("## Questionnaire\n1. Is it?\n2. What is 2 + 2?\n   Say why."),
                "questionnaire",
            ),
            _cell(
                new_markdown_cell(f"<details><summary>Answers</summary>\n\n{answers}\n</details>"),
                "answers",
            ),
        ]
    )


SOLVED = "def add(a, b):\n    # BEGIN SOLUTION\n    return a + b\n    # END SOLUTION"
RANGES = {
    "profile": "ci",
    "threads": [1, 2],
    "seeds": [0, 1],
    "lambda": {"1": 1.0, "2": 3.0},
    "rows": [
        {"method": "baseline", "seed": 0, "threads": 1, "lam": 0.0, "accuracy_id": 0.50},
        {"method": "baseline", "seed": 0, "threads": 2, "lam": 0.0, "accuracy_id": 0.52},
        {"method": "baseline", "seed": 1, "threads": 1, "lam": 0.0, "accuracy_id": 0.61},
        {"method": "guided", "seed": 0, "threads": 1, "lam": 1.0, "accuracy_id": 0.90},
        {"method": "guided", "seed": 0, "threads": 2, "lam": 3.0, "accuracy_id": 0.85},
    ],
}


def _folder(tmp_path, notebook):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(notebook, folder / "07_lesson.ipynb")
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps({"ci": RANGES}))
    return folder, ranges


def test_key_shows_solution_without_markers_and_pairs_answers(tmp_path):
    key = answer_key.build(*_folder(tmp_path, _lesson(SOLVED)))
    assert "## 7 · A lesson" in key
    assert "**Exercise 1 · Add.** Add two numbers." in key and "## 2 · Write it" not in key
    assert "```python\ndef add(a, b):\n    return a + b\n```" in key
    assert "BEGIN SOLUTION" not in key and "check_add" not in key
    assert "1. Is it?\n\n   *Answer:* Yes, because." in key
    assert "2. What is 2 + 2? Say why.\n\n   *Answer:* Four. It is 2 + 2." in key


def test_ranges_are_min_max_over_seeds_and_threads(tmp_path):
    key = answer_key.build(*_folder(tmp_path, _lesson(SOLVED)))
    row = next(line for line in key.splitlines() if line.startswith("| accuracy, in-dist"))
    # baseline: 0.50, 0.52, 0.61; guided 0.90, 0.85; same run across threads: 0.02 and 0.05
    assert row == "| accuracy, in-distribution test split | 0.50 – 0.61 | 0.85 – 0.90 | 0.050 |"
    assert "### ci profile" in key and "1 with 1 thread(s), 3 with 2 thread(s)" in key
    assert "| AUC" not in key, "a metric that was not measured gets no row"


@pytest.mark.parametrize(
    "source",
    [
        "def add(a, b):\n    return a + b",
        "def add(a, b):\n    # BEGIN SOLUTION\n    return a + b",
        "def add(a, b):\n    # END SOLUTION\n    return a + b\n    # BEGIN SOLUTION",
        # a look-alike marker: make student refuses it, and so does the key (one parser)
        "def add(a, b):\n    #BEGIN SOLUTION\n    return a + b\n    # END SOLUTION",
    ],
)
def test_unpaired_solution_markers_name_the_cell(tmp_path, source):
    with pytest.raises(answer_key.AnswerKeyError, match=r"07_lesson.ipynb, cell 2\b.*pair up"):
        answer_key.build(*_folder(tmp_path, _lesson(source)))


def test_answers_numbered_unlike_questions_are_refused(tmp_path):
    notebook = _lesson(SOLVED, answers="1. Yes.\n3. Four.")
    with pytest.raises(answer_key.AnswerKeyError, match=r"questions \[1, 2\] but answers \[1, 3\]"):
        answer_key.build(*_folder(tmp_path, notebook))


def test_questionnaire_needs_an_answers_cell(tmp_path):
    notebook = _lesson(SOLVED)
    notebook.cells[-1].metadata["tags"] = ["experiment"]
    with pytest.raises(answer_key.AnswerKeyError, match="followed by a cell tagged `answers`"):
        answer_key.build(*_folder(tmp_path, notebook))


def test_check_mode_reports_a_stale_key(tmp_path, capsys):
    folder, ranges = _folder(tmp_path, _lesson(SOLVED))
    out = tmp_path / "answers.md"
    arguments = ["--notebooks", str(folder), "--ranges", str(ranges), "--out", str(out)]
    assert answer_key.main([*arguments, "--check"]) == 1  # no key yet
    assert answer_key.main(arguments) == 0
    assert answer_key.main([*arguments, "--check"]) == 0
    out.write_text(out.read_text().replace("Four.", "Five."))  # a hand edit
    assert answer_key.main([*arguments, "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_a_non_utf8_notebook_is_an_error_naming_the_file(tmp_path, capsys):
    folder, ranges = _folder(tmp_path, _lesson(SOLVED))
    path = folder / "07_lesson.ipynb"
    latin1 = path.read_text(encoding="utf-8").encode("latin-1")  # "7 · A lesson": · is 0xb7
    path.write_bytes(latin1)
    line = latin1[: latin1.index(b"\xb7")].count(b"\n") + 1
    out = tmp_path / "answers.md"
    arguments = ["--notebooks", str(folder), "--ranges", str(ranges), "--out", str(out)]
    assert answer_key.main(arguments) == 2
    error = capsys.readouterr().err
    assert f"{path}, line {line}: not UTF-8 (byte 0xb7); save the notebook as UTF-8" in error
    assert not out.exists()


def test_missing_ranges_say_how_to_measure_them(tmp_path):
    folder, _ = _folder(tmp_path, _lesson(SOLVED))
    with pytest.raises(FileNotFoundError, match="benchmarks/answer_ranges.py"):
        answer_key.build(folder, tmp_path / "nowhere.json")


def test_one_thread_count_gives_no_machine_column(tmp_path):
    one = dict(RANGES, threads=[1], rows=[r for r in RANGES["rows"] if r["threads"] == 1])
    row = next(
        line
        for line in answer_key.ranges_section(one).splitlines()
        if line.startswith("| accuracy, in-dist")
    )
    assert row.endswith("| 0.90 – 0.90 | not measured |")


def test_measured_ranges_cover_every_seed_method_and_thread_count():
    measured = json.loads(answer_key.RANGES.read_text())
    assert "workshop" in measured, "the profile students run must be measured"
    assert any(len(ranges["threads"]) >= 2 for ranges in measured.values()), (
        "one thread count says nothing about machines"
    )
    for profile, ranges in measured.items():
        runs = {(row["method"], row["seed"], row["threads"]) for row in ranges["rows"]}
        assert runs == {
            (method, seed, threads)
            for method in ("baseline", "guided")
            for seed in ranges["seeds"]
            for threads in ranges["threads"]
        }, profile
        for row in ranges["rows"]:
            assert all(0.0 <= row[m] <= 1.0 for m in answer_key.METRIC_NAMES if m in row), row


def test_committed_answer_key_is_current():
    """Fails when a notebook's exercises or answers, or the measured ranges, changed."""
    expected = answer_key.build()
    assert answer_key.KEY.read_text() == expected, (
        "docs/answers.md is out of date; run `python tools/answer_key.py` and commit it"
    )
