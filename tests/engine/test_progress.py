"""agkit.engine.progress: the kit's one bar factory, and text bars an executed notebook keeps."""

import pytest
from toy import train

from agkit.engine import progress
from agkit.engine.progress import Progress, TextBar


@pytest.fixture
def text_bars():
    progress.use_text_bars()
    yield
    progress.use_text_bars(False)


def test_bars_are_tqdm_until_text_bars_are_asked_for(text_bars):
    assert isinstance(progress.bar(total=1), TextBar)
    progress.use_text_bars(False)
    assert not isinstance(progress.bar(total=1), TextBar)


def test_fit_draws_one_bar_over_its_epochs(text_bars, capsys):
    train(epochs=2, callbacks=[Progress(desc="toy")])
    last = [line for line in capsys.readouterr().out.splitlines() if line.strip()][-1]
    assert last.startswith("toy: 100%") and "2/2" in last and "loss=" in last


def test_text_bar_ends_with_the_finished_bar(capsys):
    # Outside a kernel each state is a printed line; in a kernel the one output is replaced
    # in place (test_notebooks checks the executed copies), so only the last line stays.
    for _ in TextBar(range(5), desc="runs", mininterval=0):
        pass
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1].startswith("runs: 100%") and "5/5" in lines[-1]
    assert all("%|" in line for line in lines)  # nothing but bar states


def test_a_disabled_text_bar_shows_nothing(capsys):
    for _ in TextBar(range(3), disable=True):
        pass
    assert capsys.readouterr().out == ""


def test_a_text_bar_left_early_says_so(capsys):
    for step in TextBar(range(4), desc="lam=1", mininterval=0):
        if step == 2:
            break  # what a loop left early does
    last = [line for line in capsys.readouterr().out.splitlines() if line.strip()][-1]
    assert last.startswith("lam=1 (stopped early):") and "2/4" in last
