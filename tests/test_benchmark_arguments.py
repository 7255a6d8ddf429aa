"""benchmarks/arguments.py, and every benchmark stopping at a bad argument before it trains."""

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
from arguments import at_least, comma_list  # benchmarks/ is on the test path (pyproject.toml)

ROOT = Path(__file__).resolve().parents[1]


def test_comma_list_reads_numbers_names_and_extra_items():
    assert comma_list(int, minimum=0)("0,1,12") == [0, 1, 12]
    assert comma_list(float, minimum=0)("0.3,3") == [0.3, 3.0]
    assert comma_list(int, minimum=1, extra=("all",))("5,all") == [5, "all"]
    assert comma_list(str, choices=("random", "balanced"))("balanced") == ["balanced"]


@pytest.mark.parametrize(
    "parse, text, message",
    [
        (comma_list(int), "0,x", "'x' is not a whole number; give a comma-separated list"),
        (comma_list(int), "0,,1", "'' is not a whole number"),
        (comma_list(int, minimum=0), "3,-1", "'-1' is below 0"),
        (comma_list(float, minimum=0), "1,nan", "'nan' is not a finite number"),
        (comma_list(float), "inf", "'inf' is not a finite number"),
        (comma_list(int, extra=("all",)), "al", "'al' is not a whole number; .* or all"),
        (comma_list(str, choices=("a", "b")), "a,c", "'c' is not one of a, b"),
        (at_least(1), "0", "0 is below 1; give 1 or more"),
        (at_least(1), "two", "'two' is not a whole number"),
    ],
)
def test_a_bad_item_is_named(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


BAD = [
    ("few_masks.py", ["--n-masks", "0"], "argument --n-masks: '0' is below 1"),
    ("simulated_annotator.py", ["--strategy", "smart"], "invalid choice: 'smart'"),
    ("guidance_zoo.py", ["--methods", "foo"], "invalid choice: 'foo'"),
    ("paper_effect.py", ["--seeds", "a"], "argument --seeds: 'a' is not a whole number"),
    ("cpu_step.py", ["--rounds", "0"], "argument --rounds: 0 is below 1"),
    ("step_ratio.py", ["--batch", "1"], "argument --batch: 1 is below 2"),
    ("synth_speed.py", ["--repeats", "0"], "argument --repeats: 0 is below 1"),
    ("notebook_times.py", ["--only", "09"], "--only 09 names no notebook"),
]


@pytest.mark.parametrize("script, arguments, message", BAD, ids=[b[0] for b in BAD])
def test_every_benchmark_stops_at_a_bad_argument_with_one_line(
    script, arguments, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # synth_speed sets it when unset: undone after
    monkeypatch.chdir(tmp_path)  # a benchmark that went on would write runs/ here
    monkeypatch.setattr(sys, "argv", [script, *arguments])
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as stopped:
        module.main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and message in err, err
    lines = err.strip().splitlines()  # argparse's usage, then one line naming the argument
    assert lines[0].startswith("usage: ") and lines[-1].startswith(f"{script}: error: ")
    assert sum("error" in line for line in lines) == 1 and list(tmp_path.iterdir()) == []
