"""agkit.experiments.comparisons: lambda chosen on validation only, baseline against guided,
summaries, and the runs each notebook trains."""

import dataclasses

import pandas as pd
import pytest
from tiny_runs import TINY

from agkit import experiments
from agkit.experiments import comparisons


def test_main_comparison_applies_every_change_to_both(monkeypatch, tmp_path):
    seen = []

    def fake_run_many(configs, runs_dir, **kwargs):
        configs = list(configs)
        seen.append((configs, kwargs))
        return pd.DataFrame(
            {"lam": [c.lam for c in configs], "accuracy_val": 0.9, "mass_in_mask_val": 0.5}
        )

    monkeypatch.setattr(comparisons, "run_many", fake_run_many)
    changes = {"n_train": 48, "data_seed": 7, "masks_from": str(tmp_path), "mask_quality": "box"}
    experiments.main_comparison(TINY, tmp_path, progress=False, device="cpu", **changes)
    for configs, kwargs in seen:
        assert kwargs["device"] == "cpu"
        for config in configs:
            assert {k: getattr(config, k) for k in changes} == changes
    compared = seen[-1][0]
    assert [c.lam > 0 for c in compared] == [False, True]


def test_lambda_is_chosen_on_validation_with_mass_as_tie_break(monkeypatch):
    scores = {  # lam -> accuracy_val, mass_in_mask_val, accuracy_shifted
        0.1: (0.90, 0.3, 0.99),
        1.0: (0.895, 0.8, 0.1),
        10.0: (0.70, 0.9, 0.1),
        0.0: (0.99, 0.0, 0.5),  # the baselines: trained in the same call, never chosen
    }
    seen = []

    def fake_run_many(configs, *args, **kwargs):
        seen.extend(configs)
        rows = [scores[c.lam] for c in configs]
        columns = ["accuracy_val", "mass_in_mask_val", "accuracy_shifted"]
        return pd.DataFrame(rows, columns=columns).assign(lam=[c.lam for c in configs])

    monkeypatch.setattr(comparisons, "run_many", fake_run_many)
    profile = dataclasses.replace(TINY, lambdas=(0.1, 1.0, 10.0), seeds=(0, 1))
    lam, table = experiments.choose_lambda(profile)
    assert lam == 1.0  # within a point of the best validation accuracy, more mass inside
    assert "accuracy_shifted" not in table  # the test split plays no part
    assert list(table["lam"]) == [0.1, 1.0, 10.0]
    # the main comparison's baselines train beside the candidates, so no core waits idle
    assert [(c.lam, c.seed) for c in seen if not c.guided] == [(0.0, 0), (0.0, 1)]
    assert experiments.baseline_config(profile, 1) in seen


def test_summarize_means_over_seeds():
    table = pd.DataFrame(
        {
            "method": ["baseline", "baseline", "guided"],
            "accuracy_shifted": [0.4, 0.6, 0.9],
            "accuracy_id": [1, 1, 1],
            "auc_shifted": [0.5, 0.5, 0.9],
            "mass_in_mask": [0.1, 0.3, 0.8],
        }
    )
    summary = experiments.summarize(table)
    assert summary.loc["baseline", "accuracy_shifted"] == pytest.approx(0.5)
    assert summary.loc["guided", "mass_in_mask"] == pytest.approx(0.8)


def test_course_configs_list_each_notebooks_runs():
    profile = experiments.get_profile("workshop")
    runs = experiments.course_configs(profile, 3.0)
    assert runs["01"] == [experiments.baseline_config(profile, 0)]
    assert len(runs["03"]) == len(profile.lambdas) + 2 * len(profile.seeds) + 1
    control = runs["03"][-1]  # the random choice of as many built-in masks as a student draws
    assert len(control.annotated_ids) == experiments.FEW_MASKS and control.masks_from is None
    ablations = experiments.ablation_configs(profile, 3.0)
    assert sum(map(len, ablations.values())) == len(runs["04"])
    assert {c.n_train for c in ablations["size"]} == set(profile.ablation_sizes)
