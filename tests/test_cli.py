"""agkit train: config files, overrides, bad configs, the run folder and resume; the
precision options; TensorBoard; benchmarks/gpu_check.py's smoke mode."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agkit import cli, experiments
from agkit.engine.precision import Precision
from agkit.method.camnet import CAMNet
from agkit.method.train import training_step

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# The smallest SynthFrac run: the ci profile, shrunk
TINY = ["--set", "n_train=32", "--set", "n_val=16", "--set", "n_test=16", "--epochs", "1"]
TINY += ["--batch-size", "16", "--size", "32", "--no-progress", "--device", "cpu"]


def agkit_train(*args: str, capsys=None) -> tuple[int, str, str]:
    code = cli.main(["train", *args])
    captured = capsys.readouterr() if capsys is not None else None
    return code, captured.out if captured else "", captured.err if captured else ""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ci", "workshop", "full"])
def test_synthfrac_configs_train_what_the_course_profile_trains(name):
    """The file's numbers are the profile's: the command trains the notebooks' run."""
    resolved = cli.resolve(cli.read_config(CONFIGS / f"{name}.toml"))
    profile = experiments.get_profile(name)
    expected = experiments.guided_config(profile, resolved["lam"], seed=0)
    assert cli.run_config(resolved) == dataclasses.replace(expected, time_limit=None)
    baseline = cli.resolve({**cli.read_config(CONFIGS / f"{name}.toml"), "lam": 0.0})
    assert cli.run_config(baseline) == dataclasses.replace(
        experiments.baseline_config(profile, seed=0), time_limit=None
    )


def test_cub_config_is_the_authors_protocol_of_cub_recipe():
    import inspect

    from agkit.experiments.recipes import cub_recipe

    resolved = cli.resolve({**cli.read_config(CONFIGS / "cub.toml"), "root": str(ROOT)})
    recipe = inspect.signature(cub_recipe).parameters
    for key in ("lam", "epochs", "backbone", "pretrained", "size", "batch_size", "lr"):
        assert resolved[key] == recipe[key].default, key
    assert (resolved["optimizer"], resolved["lr_step"], resolved["momentum"]) == ("sgd", 30, 0.9)
    assert resolved["options"] == {"images_per_class": 5, "radius": 50.0, "val_per_class": 0}
    # what the file leaves out comes from the recipe too
    bare = cli.resolve({"dataset": "cub", "root": str(ROOT)})
    assert {k: bare[k] for k in resolved if k != "workers"} == {
        k: resolved[k] for k in resolved if k != "workers"
    }


@pytest.mark.parametrize("name", ["fracatlas", "grazpedwri", "mura"])
def test_real_dataset_configs_resolve_with_an_existing_root(name, tmp_path):
    resolved = cli.resolve({**cli.read_config(CONFIGS / f"{name}.toml"), "root": str(tmp_path)})
    assert resolved["dataset"] == name and resolved["backbone"] == "resnet18"
    assert "n_train" not in resolved  # a synthfrac key


def test_the_resolved_config_written_to_a_run_is_itself_a_valid_config(tmp_path):
    resolved = cli.resolve(cli.read_config(CONFIGS / "cub.toml") | {"root": str(tmp_path)})
    path = write(tmp_path / "again.toml", cli.to_toml(resolved))
    assert cli.resolve(cli.read_config(path)) == resolved


# ---------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------


def test_command_line_overrides_the_file(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "train", lambda c, out, resume=False: seen.update(c, out=out) or {})
    argv = ["train", str(CONFIGS / "ci.toml"), "--lam", "3", "--epochs", "10"]
    argv += ["--guidance", "rrr", "--set", "lr=1e-2", "--set", "mask_quality=box"]
    argv += ["--no-recalibrate-bn", "--out", "somewhere"]
    assert cli.main(argv) == 0
    assert (seen["lam"], seen["epochs"], seen["guidance"]) == (3.0, 10, "rrr")
    assert (seen["lr"], seen["mask_quality"], seen["recalibrate_bn"]) == (0.01, "box", False)
    assert seen["out"] == Path("somewhere") and seen["n_train"] == 128  # the rest: the file's


def test_set_reaches_a_loaders_options(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "train", lambda c, out, resume=False: seen.update(c) or {})
    argv = ["train", str(CONFIGS / "cub.toml"), "--set", f"root={tmp_path}"]
    argv += ["--set", "options.images_per_class=10"]
    assert cli.main(argv) == 0
    assert seen["options"]["images_per_class"] == 10 and seen["root"] == str(tmp_path)


# ---------------------------------------------------------------------------------------
# Bad configs: one sentence naming the key or the path, exit code 2
# ---------------------------------------------------------------------------------------

BAD = {
    "unknown key": ('dataset = "synthfrac"\nlamda = 3\n', "'lamda'"),
    "wrong type": ('dataset = "synthfrac"\nlam = "three"\n', "lam in"),
    "wrong type int": ('dataset = "synthfrac"\nepochs = 2.5\n', "epochs in"),
    "unknown choice": ('dataset = "synthfrac"\nguidance = "rr"\n', "guidance = 'rr'"),
    "missing root": ('dataset = "fracatlas"\nroot = "/no/such/FracAtlas"\n', "/no/such/FracAtlas"),
    "unknown option": ('dataset = "cub"\nroot = "."\n[options]\nimages = 5\n', "options.images"),
    "option type": ('dataset = "cub"\nroot = "."\n[options]\nradius = "big"\n', "options.radius"),
    "profile": ('dataset = "synthfrac"\nprofile = "huge"\n', "'huge'"),
    "not toml": ("lam = = 3\n", "not valid TOML"),
    # a truncated or blank file trained the default recipe into runs/train/<name>
    "empty file": ("", "holds no settings (0 bytes)"),
    "comments only": ("# lam = 3\n", "holds no settings (10 bytes)"),
}
# Values of the right type that no run can use: each named before anything trains, whether
# the config check or the data and model behind it refuse them.
BAD_VALUES = {
    "n_val=0": "n_val must be at least 1",
    "n_train=0": "n_train must be at least 1",
    "seed=-5": "seed must be a finite number >= 0",
    "annotated_fraction=1.5": "annotated_fraction must be a number from 0 to 1",
    "annotated_fraction=nan": "annotated_fraction must be a number from 0 to 1",
    "lr_decay_at=2.0": "lr_decay_at must be a number from 0 to 1",
    "momentum=-0.1": "momentum must be a number from 0 to 1",
    "lr_gamma=0": "lr_gamma must be a finite number above 0",
    "in_channels=2": "in_channels must be 1 (gray), 3 (RGB) or 0",
    "size=7": "size must be an integer from 32 to 256 pixels",
    "backbone=resnet9000": "resnet9000",
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_config_stops_with_one_sentence_naming_the_key(case, tmp_path, capsys):
    text, named = BAD[case]
    path = write(tmp_path / "bad.toml", text)
    code, out, err = agkit_train(str(path), "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 2 and named in err
    assert err.startswith("agkit train: ") and err.count("\n") == 1 and err.rstrip().endswith(".")
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.parametrize("setting", list(BAD_VALUES))
def test_a_value_no_run_can_use_stops_with_one_sentence(setting, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = agkit_train(
        str(CONFIGS / "ci.toml"), "--set", setting, "--out", str(out), capsys=capsys
    )
    assert code == 2 and err.startswith("agkit train: ") and BAD_VALUES[setting] in err, err
    assert err.count("\n") == 1 and not out.exists()  # one line, nothing written


def test_a_missing_config_file_and_a_bad_set_name_the_path_and_the_key(tmp_path, capsys):
    code, _, err = agkit_train(str(tmp_path / "nope.toml"), capsys=capsys)
    assert code == 2 and str(tmp_path / "nope.toml") in err
    code, _, err = agkit_train(str(CONFIGS / "ci.toml"), "--set", "lam=abc", capsys=capsys)
    assert code == 2 and "lam in --set must be a number" in err


def test_a_config_that_is_not_utf8_and_an_out_that_is_no_folder_are_named(tmp_path, capsys):
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('dataset = "synthfrac"\n# r\xe9glages\n'.encode("latin-1"))
    code, _, err = agkit_train(str(latin1), "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "latin1.toml is not valid TOML" in err
    # an --out that is a file, or lies under one: named before anything is built, file kept
    a_file = write(tmp_path / "notes.txt", "mine")
    for out, named in ((a_file, "is a file"), (a_file / "run", f"{a_file} is a file")):
        code, _, err = agkit_train(str(CONFIGS / "ci.toml"), "--out", str(out), capsys=capsys)
        assert code == 2 and err.count("\n") == 1 and named in err, err
    assert a_file.read_text() == "mine"


def test_the_command_prints_no_traceback_for_a_bad_config(tmp_path):
    path = write(tmp_path / "bad.toml", 'dataset = "synthfrac"\nlamda = 3\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "agkit", "train", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "unknown key 'lamda'" in done.stderr


def test_compile_and_fp16_are_refused_for_the_double_backward_terms(capsys):
    for term in ("rrr", "gradcam"):
        code, _, err = agkit_train(
            str(CONFIGS / "ci.toml"), "--guidance", term, "--compile", capsys=capsys
        )
        assert code == 2
        assert f"--compile cannot train guidance {term!r}: it differentiates twice" in err
        code, _, err = agkit_train(
            str(CONFIGS / "ci.toml"), "--guidance", term, "--amp", "fp16", capsys=capsys
        )
        assert code == 2 and "use --amp bf16 instead" in err
    # the baseline never differentiates twice: compile is allowed there
    cli.resolve({"guidance": "rrr", "lam": 0.0, "compile": True})


# ---------------------------------------------------------------------------------------
# The run folder and resume
# ---------------------------------------------------------------------------------------


def test_a_run_writes_its_folder_and_resumes_only_the_same_configuration(tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, _ = agkit_train(
        str(CONFIGS / "ci.toml"), "--out", str(out), *TINY, capsys=capsys
    )
    assert code == 0 and f"written to {out}" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.toml",
        "history.json",
        "metrics.json",
    ]
    stored = cli.read_config(out / "config.toml")
    assert (stored["n_train"], stored["epochs"], stored["lam"]) == (32, 1, 3.0)
    first = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in first] == [1]
    assert metrics["n_id"] == 16 and metrics["n_shifted"] == 16 and metrics["epochs_run"] == 1

    # again without --resume: refused, nothing lost
    code, _, err = agkit_train(str(CONFIGS / "ci.toml"), "--out", str(out), *TINY, capsys=capsys)
    assert code == 2 and "pass --resume" in err
    # resume with another lambda: refused naming it
    args = (str(CONFIGS / "ci.toml"), "--out", str(out), *TINY, "--resume")
    code, _, err = agkit_train(*args, "--lam", "1", capsys=capsys)
    assert code == 2 and "lam=3.0, this call asks lam=1.0" in err
    # resume from a damaged checkpoint or a hand-edited config.toml: one line, files kept
    checkpoint, stored_file = out / "checkpoint.pt", out / "config.toml"
    good, good_config = checkpoint.read_bytes(), stored_file.read_text()
    checkpoint.write_bytes(good[:100])
    code, _, err = agkit_train(*args, "--epochs", "2", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "checkpoint.pt (100 bytes) cannot be read" in err
    assert checkpoint.read_bytes() == good[:100]
    checkpoint.write_bytes(good)
    stored_file.write_text("epochs = = 2\n")
    code, _, err = agkit_train(*args, "--epochs", "2", capsys=capsys)
    assert code == 2 and "the configuration the run was started with, is not valid TOML" in err
    stored_file.write_text(good_config)
    # resume with more epochs: continues
    code, _, _ = agkit_train(*args, "--epochs", "2", capsys=capsys)
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0] == first[0]

    # a resumed run equals an uninterrupted one
    straight = tmp_path / "straight"
    argv = (str(CONFIGS / "ci.toml"), "--out", str(straight), *TINY, "--epochs", "2")
    assert agkit_train(*argv, capsys=capsys)[0] == 0
    resumed = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    uninterrupted = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    assert json.loads((straight / "metrics.json").read_text()) == json.loads(
        (out / "metrics.json").read_text()
    )

    # the checkpoint's own record refuses, in one line, what config.toml would have: fewer
    # epochs than it holds, and (config.toml deleted by hand) another lambda
    kept = (out / "checkpoint.pt").read_bytes()
    code, _, err = agkit_train(*args, "--epochs", "1", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "holds 2 epochs, this call asks for 1" in err
    (out / "config.toml").unlink()
    code, _, err = agkit_train(*args, "--epochs", "2", "--lam", "1", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "lam=3.0, this call asks lam=1.0" in err
    assert (out / "checkpoint.pt").read_bytes() == kept


def test_a_real_dataset_config_trains_on_its_files(tmp_path, capsys):
    from agkit.data.real.demo import write_demo_dataset

    root = write_demo_dataset("fracatlas", tmp_path / "FracAtlas", n=40, size=64, seed=0)
    out = tmp_path / "run"
    argv = [str(CONFIGS / "fracatlas.toml"), "--out", str(out), "--set", f"root={root}"]
    argv += ["--backbone", "tiny", "--no-pretrained", "--size", "32", "--epochs", "1"]
    argv += ["--amp", "fp32", "--workers", "0", "--device", "cpu", "--no-progress"]
    code, _, err = agkit_train(*argv, capsys=capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert metrics["n_val"] > 0 and metrics["n_test"] > 0
    assert "val_accuracy" in history[0]


@pytest.mark.parametrize("term", ["rrr", "forbidden"])
def test_forbidden_region_terms_train_on_synthfracs_marker_boxes(term, tmp_path, capsys):
    """Without a region these terms would be 0 on every batch: guided in name only."""
    out = tmp_path / term
    argv = (str(CONFIGS / "ci.toml"), "--out", str(out), *TINY, "--guidance", term)
    assert agkit_train(*argv, "--lam", "1", capsys=capsys)[0] == 0
    history = json.loads((out / "history.json").read_text())
    assert history[0]["att"] > 0


def test_a_batch_carries_the_marker_box_of_each_of_its_images():
    from agkit.analysis.diagnostics import synthfrac_marker_masks

    resolved = cli.resolve({"profile": "ci", "guidance": "rrr", "n_train": 32, "size": 32})
    loader = cli.build(resolved)["train_loader"]
    splits = experiments.make_splits(cli.run_config(resolved))
    boxes = synthfrac_marker_masks(splits["train"])
    order = [i for i, _ in loader.sampler]  # the first epoch's order (a fresh generator)
    batch = next(iter(cli.build(resolved)["train_loader"]))
    assert len(batch) == 5
    torch.testing.assert_close(batch[4], boxes[order[: len(batch[4])]])


@pytest.mark.filterwarnings("ignore:too few images per stratum")
def test_guided_training_on_real_data_without_masks_or_regions_is_refused(tmp_path, capsys):
    from agkit.data.real.demo import write_demo_dataset

    root = write_demo_dataset("mura", tmp_path / "mura", n=24, size=32, seed=0)
    argv = [str(CONFIGS / "mura.toml"), "--set", f"root={root}", "--out", str(tmp_path / "r")]
    code, _, err = agkit_train(*argv, "--lam", "1", capsys=capsys)
    assert code == 2 and "mura training split has none; set options.mask_store" in err
    store = tmp_path / "empty_store"
    code, _, err = agkit_train(
        *argv, "--lam", "1", "--set", f"options.mask_store={store}", capsys=capsys
    )
    assert code == 2 and err.startswith("agkit train: options.mask_store: found 0 masks")
    code, _, err = agkit_train(*argv, "--guidance", "rrr", "--lam", "1", capsys=capsys)
    assert code == 2 and "mura does not provide" in err


# ---------------------------------------------------------------------------------------
# Precision and memory format on the CPU
# ---------------------------------------------------------------------------------------


def _batch(size=32, n=8):
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, 8:24, 8:20] = 1
    images = torch.rand(n, 1, size, size, generator=g)
    return images, torch.arange(n) % 2, masks, torch.ones(n, dtype=torch.bool)


def _step(precision, lam=1.0, guidance="cam"):
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    if precision is not None:
        model = precision.model(model)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = training_step(
        model, _batch(), optimiser, lam=lam, guidance=guidance, precision=precision
    )
    return losses, model


def test_bf16_autocast_runs_a_step_close_to_fp32():
    reference, _ = _step(None)
    losses, model = _step(Precision("bf16", device="cpu"))
    assert all(torch.isfinite(torch.tensor(losses[k])) for k in ("loss", "ce", "att"))
    assert losses["loss"] == pytest.approx(reference["loss"], rel=0.02)
    assert losses["loss"] != reference["loss"]  # it did run in 16 bits
    # the weights stay float32 (autocast casts on the fly)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_attention_loss_runs_in_float32_under_autocast(monkeypatch):
    import agkit.guidance.cam as train_module

    seen = []
    original = train_module.attention_guidance_loss

    def spy(cams, *args, **kwargs):
        loss = original(cams, *args, **kwargs)
        seen.append((cams.dtype, loss.dtype))
        return loss

    monkeypatch.setattr(train_module, "attention_guidance_loss", spy)
    _step(Precision("bf16", device="cpu"))
    assert seen == [(torch.bfloat16, torch.float32)]


def test_fp16_scales_the_loss_and_skips_a_step_whose_gradients_overflow():
    precision = Precision("fp16", device="cpu")
    assert precision.scaler.is_enabled() and precision.scaler.get_scale() == 2.0**16
    weight = torch.nn.Parameter(torch.ones(3))
    optimiser = torch.optim.SGD([weight], lr=0.1)
    precision.step((weight * torch.tensor([1.0, 2.0, 3.0])).sum(), optimiser)
    # the scaled gradient was unscaled before the step: SGD moved by lr * (1, 2, 3)
    torch.testing.assert_close(weight.detach(), torch.tensor([0.9, 0.8, 0.7]))
    optimiser.zero_grad()
    precision.step((weight * float("inf")).sum(), optimiser)  # an overflow
    torch.testing.assert_close(weight.detach(), torch.tensor([0.9, 0.8, 0.7]))  # skipped
    assert precision.scaler.get_scale() == 2.0**15  # and the scale halved
    again = Precision("fp16", device="cpu")
    again.load_state_dict(precision.state_dict())  # what a checkpoint carries
    assert again.scaler.get_scale() == 2.0**15
    assert not Precision("bf16", device="cpu").scaler.is_enabled()


def test_a_fp16_training_step_runs_through_the_scaler():
    precision = Precision("fp16", device="cpu")
    losses, _ = _step(precision)
    assert torch.isfinite(torch.tensor(losses["loss"]))
    assert precision.scaler._get_growth_tracker() == 1  # one unskipped step was counted


def test_channels_last_gives_the_loss_of_contiguous_tensors():
    reference, plain = _step(None)
    precision = Precision("fp32", channels_last=True, device="cpu")
    losses, model = _step(precision)
    assert losses["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    kernels = [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in plain.parameters())
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_channels_last_images_keep_rrr_differentiable():
    precision = Precision("fp32", channels_last=True, device="cpu")
    images, labels, masks, has_mask = _batch()
    forbidden = torch.zeros_like(masks)
    forbidden[:, :, :6, :6] = 1
    torch.manual_seed(0)
    model = precision.model(CAMNet("tiny", 2, pooling="avg"))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = (images, labels, masks, has_mask, forbidden)
    losses = training_step(model, batch, optimiser, lam=1.0, guidance="rrr", precision=precision)
    assert losses["att"] > 0


# ---------------------------------------------------------------------------------------
# TensorBoard
# ---------------------------------------------------------------------------------------


def test_tensorboard_logs_losses_metrics_and_cam_overlays(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    argv = [str(CONFIGS / "ci.toml"), "--out", str(tmp_path / "run"), *TINY, "--epochs", "2"]
    code, _, err = agkit_train(*argv, "--tensorboard", str(logs), capsys=capsys)
    assert code == 0, err
    events = EventAccumulator(str(logs), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/ce", "train/att", "train/lr", "val/accuracy", "val/auc"):
        assert tag in tags["scalars"], tag
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(row["epoch"], pytest.approx(row["loss"])) for row in history]
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2]
    images = events.Images("cams")
    assert [i.step for i in images] == [1, 2]
    assert (images[0].width, images[0].height) == (8 * 32, 32)  # a row of 8 overlays


def test_a_missing_tensorboard_names_the_extra(monkeypatch):
    from agkit.engine import tensorboard as tensorboard_log

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'agkit\[tensorboard\]'"):
        tensorboard_log.summary_writer("anywhere")


# ---------------------------------------------------------------------------------------
# benchmarks/gpu_check.py
# ---------------------------------------------------------------------------------------


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_smoke_mode_on_the_cpu(tmp_path, capsys):
    report_file = tmp_path / "report.json"
    assert _gpu_check().main(["--device", "cpu", "--quick", "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    settings = report["steps"]["settings"]
    assert list(settings) == ["fp32", "bf16", "fp32 channels-last", "bf16 channels-last"]
    assert settings["fp32"]["ratio_to_fp32"] == 1.0
    assert all(row["ms_per_step"] > 0 for row in settings.values())
    assert report["runs"]["baseline"]["lam"] == 0 and report["runs"]["guided"]["lam"] == 3.0
    assert "baseline vs guided" in capsys.readouterr().out


def test_gpu_check_without_cuda_says_so(monkeypatch, capsys):
    module = _gpu_check()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert module.main([]) == 1
    assert "no CUDA device is present" in capsys.readouterr().err


def test_configs_readme_lists_every_key_and_every_file():
    text = (CONFIGS / "README.md").read_text()
    for key in cli.KEYS:
        assert f"| `{key}` |" in text, key
    for path in CONFIGS.glob("*.toml"):
        assert f"`{path.name}`" in text, path.name


@pytest.mark.filterwarnings("ignore:.pin_memory. argument is set as true")
def test_loader_workers_and_pinned_memory_give_the_same_batches():
    from agkit.engine import distributed

    resolved = cli.resolve({"profile": "ci", "n_train": 24, "size": 32, "batch_size": 8})
    loader = cli.build(resolved)["train_loader"]
    plain = [batch[0] for batch in loader]
    loader.sampler.generator.manual_seed(0)  # the first epoch again, as fit reseeds it
    workers = distributed.shard_loader(loader, num_workers=2, pin_memory=True)
    assert workers is not loader and workers.num_workers == 2 and workers.pin_memory
    loader.sampler.generator.manual_seed(0)
    for a, b in zip(plain, [batch[0] for batch in workers], strict=True):
        torch.testing.assert_close(a, b)


def test_the_console_script_is_the_command():
    import importlib

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["agkit"].partition(":")
    assert getattr(importlib.import_module(module), name) is cli.main
