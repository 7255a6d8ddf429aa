"""agkit.engine.timing: steps taking turns, and the median of per-round ratios."""

import time

import pytest

from agkit.engine.timing import step_times


def test_ratios_are_medians_of_per_round_ratios_robust_to_a_drifting_load(monkeypatch):
    # A machine that slows down tenfold from round 3 on: every step of a round slows alike,
    # so the per-round ratio stays 2 where a ratio of medians over rounds would not.
    clock = {"now": 0.0, "round": 0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])

    def step(cost):
        def run():
            clock["now"] += cost * (10 if clock["round"] >= 3 else 1)

        return run

    def reference():
        clock["round"] += 1
        step(1.0)()

    times = step_times({"base": reference, "guided": step(2.0)}, repeats=4, warmup=1)
    assert times.seconds["base"] == [1.0, 10.0, 10.0, 10.0]  # the warm-up round is dropped
    assert times.ratios().to_dict() == {"base": 1.0, "guided": 2.0}
    assert times.medians()["guided"] == pytest.approx(20.0)


def test_no_steps_is_refused():
    with pytest.raises(ValueError, match="at least one step"):
        step_times({})
