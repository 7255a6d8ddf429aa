"""The training loop on a toy task: it learns, repeats bit for bit, resumes, stops on NaN."""

import copy
import math
import sys
import time
import types
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from agkit.method.camnet import CAMNet
from agkit.method.loss import attention_guidance_loss, attention_loss_floor
from agkit.method.train import (
    NonFiniteImages,
    TimeLimitWarning,
    TrainingDiverged,
    evaluate,
    fit,
    load_checkpoint,
    recalibrate_batchnorm,
    save_checkpoint,
    training_step,
)


def toy_loader(n=96, seed=0, shuffle=True):
    """Positives carry a bright 8 x 8 square at a random place; the mask marks it."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 32, 32, generator=g) * 0.3
    labels = torch.arange(n) % 2
    masks = torch.zeros(n, 1, 32, 32)
    for i in range(n):
        y, x = torch.randint(0, 24, (2,), generator=g).tolist()
        masks[i, 0, y : y + 8, x : x + 8] = 1
        if labels[i]:
            images[i, 0, y : y + 8, x : x + 8] += 0.6
    data = TensorDataset(images, labels, masks, torch.ones(n, dtype=torch.bool))
    return DataLoader(
        data, batch_size=16, shuffle=shuffle, generator=torch.Generator().manual_seed(seed)
    )


def train(lam=0.1, epochs=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = CAMNet("tiny", 2, pooling="softmax")
    history = fit(
        model,
        toy_loader(),
        toy_loader(seed=1, shuffle=False),
        lam=lam,
        epochs=epochs,
        lr=3e-3,
        seed=seed,
        progress=False,
        device="cpu",
        **kwargs,
    )
    return model, history


def test_training_lowers_the_loss_and_learns_the_toy_task():
    model, history = train(epochs=6)
    assert list(history.columns[:4]) == ["epoch", "loss", "ce", "att"]
    assert history["loss"].iloc[-1] < 0.7 * history["loss"].iloc[0]
    assert evaluate(model, toy_loader(seed=2, shuffle=False))["accuracy"] > 0.8


def test_same_seed_repeats_bit_for_bit():
    model_a, history_a = train(seed=3)
    model_b, history_b = train(seed=3)
    pd.testing.assert_frame_equal(
        history_a.drop(columns="seconds"), history_b.drop(columns="seconds")
    )
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    straight, _ = train(epochs=3)
    train(epochs=2, checkpoint=tmp_path / "run.pt")
    resumed, history_resumed = train(epochs=3, checkpoint=tmp_path / "run.pt", resume=True)
    assert len(history_resumed) == 3
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_baseline_history_monitors_the_attention_loss_and_its_floor():
    _, history = train(lam=0.0, epochs=1)
    assert (history["att"] > history["att_floor"]).all() and (history["att_floor"] > 0).all()
    assert {"val_accuracy", "val_auc", "val_mass_in_mask"} <= set(history.columns)


def test_baseline_step_reports_the_attention_loss_without_training_on_it():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="avg")
    images, _, masks, _ = batch = next(iter(toy_loader(shuffle=False)))
    before = copy.deepcopy(model)
    expected = attention_guidance_loss(before(images).cams, masks).item()
    floor = attention_loss_floor(masks, (4, 4))  # 32 px at stride 8
    # One mask covers 8 x 8 pixels = 1 to 4 cells of the 4 x 4 grid: the floor is in [0, log 4].
    assert 0 <= floor <= math.log(4)
    losses = training_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.1), lam=0.0)
    assert losses["att"] == pytest.approx(expected, rel=1e-6)
    assert losses["att_floor"] == pytest.approx(floor, abs=1e-12)
    assert losses["loss"] == losses["ce"]  # the baseline's loss is the cross-entropy only


def test_old_classes_names_of_training_step_warn_and_mean_the_same():
    batch = next(iter(toy_loader(shuffle=False)))
    steps = {}
    for name, options in [("new", {"classes": "label"}), ("old", {"channels": "target"})]:
        torch.manual_seed(0)
        model = CAMNet("tiny", 2, pooling="avg")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            steps[name] = training_step(model, batch, opt, lam=1.0, **options)
        said = [str(w.message) for w in caught if w.category is DeprecationWarning]
        assert bool(said) == (name == "old")
    assert any("training_step(channels=...) is now classes=" in m for m in said)
    assert steps["old"] == steps["new"]


def test_nan_loss_stops_with_a_clear_message():
    model = CAMNet("tiny", 2)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        fit(model, toy_loader(), lam=0.0, epochs=1, progress=False, device="cpu")


def test_labels_outside_the_classes_are_explained():
    images, labels, masks, has = next(iter(toy_loader()))
    bad = DataLoader(TensorDataset(images, labels + 5, masks, has), batch_size=8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        fit(CAMNet("tiny", 2), bad, epochs=1, progress=False, device="cpu")


def test_resume_with_a_guided_dataset_loader(tmp_path):
    """The kit's own loader (seeded sampler with augmentation) also resumes exactly."""
    from agkit.data import GuidedDataset, make_loader

    loader = toy_loader()
    images, labels, masks, _ = (torch.cat(t) for t in zip(*loader, strict=True))

    def run(epochs, **kwargs):
        torch.manual_seed(0)
        model = CAMNet("tiny", 2, pooling="softmax")
        data = GuidedDataset(images, labels, masks, augment=True)
        fit(
            model,
            make_loader(data, 16, shuffle=True),
            lam=0.1,
            epochs=epochs,
            lr=3e-3,
            progress=False,
            device="cpu",
            **kwargs,
        )
        return model

    straight = run(3)
    run(2, checkpoint=tmp_path / "g.pt")
    resumed = run(3, checkpoint=tmp_path / "g.pt", resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# --- fit's promises -------------------------------------------------------------------


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_equals_the_returned_model(tmp_path):
    """BatchNorm recalibration used to run after the last save: the two models differed."""
    model, _ = train(epochs=2, checkpoint=tmp_path / "run.pt")
    reloaded = CAMNet("tiny", 2, pooling="softmax")
    load_checkpoint(tmp_path / "run.pt", reloaded)
    assert same_state(model, reloaded)
    x = next(iter(toy_loader(seed=2, shuffle=False)))[0]
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, reloaded.eval()(x).logits)


def test_resuming_a_finished_run_returns_the_stored_model(tmp_path):
    model, history = train(epochs=2, checkpoint=tmp_path / "run.pt")
    again, history_again = train(epochs=2, checkpoint=tmp_path / "run.pt", resume=True)
    assert same_state(model, again)
    pd.testing.assert_frame_equal(history, history_again)


class SlowClock:
    """A stand-in for time.perf_counter that jumps forward at one chosen training batch."""

    def __init__(self, jump_at_batch):
        self.now, self.batches, self.jump_at_batch = 0.0, 0, jump_at_batch

    def __call__(self):
        return self.now

    def wrap(self, loader):
        clock = self

        class Loader:
            def __init__(self):
                self.dataset, self.batch_size = loader.dataset, loader.batch_size
                self.generator = loader.generator

            def __len__(self):
                return len(loader)

            def __iter__(self):
                for batch in loader:
                    clock.batches += 1
                    if clock.batches == clock.jump_at_batch:
                        clock.now += 1000.0  # the machine got busy
                    yield batch

        return Loader()


def test_time_limit_never_keeps_a_partial_epoch(tmp_path, monkeypatch):
    """The limit passes in the middle of epoch 2 (6 batches an epoch): epoch 2 is rolled back."""
    clock = SlowClock(jump_at_batch=6 + 3)
    monkeypatch.setattr(time, "perf_counter", clock)
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    with pytest.warns(TimeLimitWarning, match="after 1 of 3 epochs"):
        history = fit(
            model,
            clock.wrap(toy_loader()),
            lam=0.1,
            epochs=3,
            lr=3e-3,
            progress=False,
            device="cpu",
            time_limit=500,
            checkpoint=tmp_path / "run.pt",
        )
    monkeypatch.undo()
    assert len(history) == 1 and history.attrs["epochs_run"] == 1
    assert history.attrs["stopped_by_time_limit"] is True
    one_epoch, _ = train(epochs=1)
    assert same_state(model, one_epoch)  # exactly the model of a 1-epoch run
    stored = CAMNet("tiny", 2, pooling="softmax")
    assert load_checkpoint(tmp_path / "run.pt", stored)["epoch"] == 1
    assert same_state(stored, model)
    # Resuming without the limit gives exactly the uninterrupted 3-epoch run.
    resumed, history_resumed = train(epochs=3, checkpoint=tmp_path / "run.pt", resume=True)
    straight, _ = train(epochs=3)
    assert same_state(resumed, straight)
    assert history_resumed.attrs["stopped_by_time_limit"] is False
    assert len(history_resumed) == 3


def test_time_limit_inside_the_first_epoch_raises_and_keeps_the_model(tmp_path, monkeypatch):
    clock = SlowClock(jump_at_batch=3)
    monkeypatch.setattr(time, "perf_counter", clock)
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    before = copy.deepcopy(model)
    with pytest.raises(TimeoutError, match="before the first epoch was complete"):
        fit(
            model,
            clock.wrap(toy_loader()),
            lam=0.1,
            epochs=3,
            lr=3e-3,
            progress=False,
            device="cpu",
            time_limit=500,
            checkpoint=tmp_path / "run.pt",
        )
    assert same_state(model, before) and not (tmp_path / "run.pt").exists()


def test_time_limit_not_reached_records_a_full_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimeLimitWarning)
        _, history = train(epochs=2, time_limit=1e6)
    assert history.attrs == {
        **history.attrs,
        "epochs_run": 2,
        "epochs": 2,
        "stopped_by_time_limit": False,
    }


@pytest.fixture(scope="module")
def two_epoch_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "run.pt"
    train(epochs=2, checkpoint=path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": 1e-2}, "lr=0.003, this call asks lr=0.01"),
        ({"lam": 1.0}, "lam=0.1, this call asks lam=1.0"),
        ({"optimizer": "sgd"}, "optimizer='adam', this call asks optimizer='sgd'"),
        ({"lr_step": 5}, "lr_step=None, this call asks lr_step=5"),
        ({"resolution": "input"}, "resolution='feature'"),
        ({"guidance": "rrr"}, "guidance=None, this call asks guidance='rrr'"),
        ({"pooling": "avg"}, "'pooling': 'softmax'"),
    ],
)
def test_resuming_with_another_configuration_is_refused(two_epoch_checkpoint, change, message):
    before = two_epoch_checkpoint.read_bytes()
    pooling = change.pop("pooling", "softmax")
    model = CAMNet("tiny", 2, pooling=pooling)
    with pytest.raises(ValueError, match=message) as info:
        fit(
            model,
            toy_loader(),
            lam=change.pop("lam", 0.1),
            epochs=3,
            lr=change.pop("lr", 3e-3),
            progress=False,
            device="cpu",
            checkpoint=two_epoch_checkpoint,
            resume=True,
            **change,
        )
    assert f"Delete {two_epoch_checkpoint}" in str(info.value)
    assert two_epoch_checkpoint.read_bytes() == before  # nothing overwritten


def test_resuming_a_checkpoint_without_configuration_is_refused(tmp_path):
    """Checkpoints of the previous release stored no configuration to check against."""
    model = CAMNet("tiny", 2, pooling="softmax")
    save_checkpoint(tmp_path / "old.pt", model, epoch=1)
    with pytest.raises(ValueError, match="stores no training configuration"):
        train(epochs=2, checkpoint=tmp_path / "old.pt", resume=True)


def test_resuming_with_fewer_epochs_than_stored_is_refused(two_epoch_checkpoint):
    with pytest.raises(ValueError, match="holds 2 epochs, this call asks for 1"):
        train(epochs=1, checkpoint=two_epoch_checkpoint, resume=True)


def test_empty_loader_raises_and_keeps_the_batchnorm_statistics():
    model, _ = train(epochs=1)
    before = copy.deepcopy(model.state_dict())
    empty = DataLoader(
        TensorDataset(
            torch.zeros(0, 1, 32, 32),
            torch.zeros(0).long(),
            torch.zeros(0, 1, 32, 32),
            torch.zeros(0).bool(),
        ),
        batch_size=16,
    )
    with pytest.raises(ValueError, match="yields no batches"):
        fit(model, empty, epochs=1, progress=False, device="cpu")
    with pytest.raises(ValueError, match="without batches"):
        recalibrate_batchnorm(model, iter([]))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_guided_sgd_divergence_raises_training_diverged():
    """The loss's own NaN check used to surface as a plain ValueError."""
    model = CAMNet("tiny", 2, pooling="softmax")
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        fit(model, toy_loader(), lam=0.1, epochs=1, optimizer="sgd", progress=False, device="cpu")


def test_infinite_cams_raise_training_diverged():
    model = CAMNet("tiny", 2, pooling="avg")
    with torch.no_grad():
        model.classifier.bias.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="NaN or inf"):
        fit(model, toy_loader(), lam=0.1, epochs=1, progress=False, device="cpu")


def test_a_finite_but_exploding_loss_raises_training_diverged():
    """Adam at lr 100 ran to a loss of 4e9 and 'completed' at chance."""
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="avg")
    with pytest.raises(TrainingDiverged, match="over 100 times its value at chance"):
        fit(model, toy_loader(), lam=0.0, epochs=3, lr=100.0, progress=False, device="cpu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_images_are_a_data_problem_naming_the_image(bad):
    images, labels, masks, has = next(iter(toy_loader(shuffle=False)))
    images = images.clone()
    images[3, 0, 5, 5] = bad
    loader = DataLoader(TensorDataset(images, labels, masks, has), batch_size=8)
    with pytest.raises(NonFiniteImages, match="image 3 ") as info:
        fit(CAMNet("tiny", 2), loader, epochs=1, progress=False, device="cpu")
    assert "data problem" in str(info.value) and "epoch 1, batch 1" in str(info.value)
    assert "learning rate" not in str(info.value) and info.value.indices == [3]
    assert isinstance(info.value, ValueError)


# --- the guidance hook ----------------------------------------------------------------


class RecordingTerm:
    """A guidance term that records what it was given and returns mean squared CAMs."""

    needs_input_grad = True
    name = "recording"

    def __init__(self):
        self.calls = []

    def __call__(self, model, images, labels, masks, has_mask, out, forbidden):
        self.calls.append(
            {
                "images_grad": images.requires_grad,
                "labels": labels,
                "masks": masks,
                "has_mask": has_mask,
                "forbidden": forbidden,
                "out": out,
            }
        )
        return out.cams.pow(2).mean()


def five_element_batch():
    images, labels, masks, has = next(iter(toy_loader(shuffle=False)))
    forbidden = torch.zeros_like(masks)
    forbidden[:, :, :4, :4] = 1
    return images, labels, masks, has, forbidden


def test_guidance_term_gets_the_batch_and_adds_lam_times_its_value():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    twin = copy.deepcopy(model)
    batch = five_element_batch()
    term = RecordingTerm()
    losses = training_step(
        model,
        batch,
        torch.optim.SGD(model.parameters(), lr=0.1),
        lam=0.5,
        guidance=term,
        device="cpu",
    )
    (call,) = term.calls
    assert call["images_grad"] and torch.equal(call["forbidden"], batch[4])
    assert torch.equal(call["labels"], batch[1]) and torch.equal(call["has_mask"], batch[3])
    assert call["out"].cams.requires_grad

    # The same step by hand: CE + lam * term, one SGD step.
    optimiser = torch.optim.SGD(twin.parameters(), lr=0.1)
    out = twin(batch[0])
    ce = F.cross_entropy(out.logits, batch[1])
    value = out.cams.pow(2).mean()
    (ce + 0.5 * value).backward()
    optimiser.step()
    assert losses["att"] == pytest.approx(value.item(), rel=1e-6)
    assert losses["loss"] == pytest.approx(ce.item() + 0.5 * value.item(), rel=1e-6)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_guidance_by_name_is_resolved_lazily_and_stored_in_the_checkpoint(tmp_path, monkeypatch):
    term = RecordingTerm()
    module = types.ModuleType("agkit.guidance")
    module.get_term = lambda name: {"recording": term}[name]
    monkeypatch.setitem(sys.modules, "agkit.guidance", module)
    fit(
        CAMNet("tiny", 2),
        toy_loader(),
        lam=0.1,
        guidance="recording",
        epochs=1,
        progress=False,
        device="cpu",
        checkpoint=tmp_path / "g.pt",
    )
    assert len(term.calls) == 6  # one per batch
    state = torch.load(tmp_path / "g.pt", weights_only=False)
    assert state["config"]["guidance"] == "recording"
    with pytest.raises(ValueError, match="guidance='recording', this call asks guidance=None"):
        fit(
            CAMNet("tiny", 2),
            toy_loader(),
            lam=0.1,
            epochs=2,
            progress=False,
            device="cpu",
            checkpoint=tmp_path / "g.pt",
            resume=True,
        )


def test_decay_step_divides_the_rate_once_after_the_share_of_the_epochs():
    from agkit.method.train import decay_step

    assert decay_step(8, 0.75) == 6 and decay_step(12, 0.75) == 9
    assert decay_step(1, 0.75) == 1  # never 0, which StepLR refuses
    assert decay_step(8, None) is None and decay_step(8, 0) is None


# ------------------------------------------------------------------ lam and empty masks


@pytest.mark.parametrize("lam", [-1.0, -1e-3, float("nan"), float("inf"), "0.1", True])
def test_fit_and_training_step_refuse_a_negative_or_non_finite_lam(lam):
    """Before: lam=-1 and lam=nan trained the baseline without a word (lam > 0 was False)."""
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0 .*got"):
        fit(model, toy_loader(), lam=lam, epochs=1, progress=False, device="cpu")
    batch = next(iter(toy_loader()))
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0"):
        training_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.1), lam=lam)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def masked_loader(annotated):
    """toy_loader's 96 images in fixed batches of 16; only images in ``annotated`` keep masks."""
    batches = list(toy_loader(shuffle=False))
    images, labels, masks = (torch.cat([b[i] for b in batches]) for i in range(3))
    keep = torch.zeros(len(images), dtype=torch.bool)
    keep[list(annotated)] = True
    masks = masks * keep.view(-1, 1, 1, 1)
    return DataLoader(TensorDataset(images, labels, masks, keep), batch_size=16)


def fit_warnings(loader, lam=0.1, epochs=2, **kwargs):
    from agkit.method.train import NothingToGuideWarning

    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model, loader, lam=lam, epochs=epochs, progress=False, device="cpu", **kwargs)
    said = [str(w.message) for w in caught if w.category is NothingToGuideWarning]
    return history, said


@pytest.mark.parametrize("guidance", [None, "cam"])
def test_fit_warns_once_when_no_image_in_the_loader_had_a_mask(guidance):
    """Before: the CAM term with all-empty masks trained the baseline without a word."""
    history, said = fit_warnings(masked_loader([]), guidance=guidance)
    assert len(said) == 1 and "no image in the training loader had a mask" in said[0]
    assert "lam=0.1" in said[0] and "trained the baseline" in said[0]
    assert len(history) == 2 and (history["att"] == 0).all() and history["loss"].notna().all()


def test_batches_without_masks_among_annotated_ones_stay_silent_and_finite():
    # only image 40 has a mask: five of the six batches hold none
    history, said = fit_warnings(masked_loader([40]))
    assert said == [] and history["loss"].notna().all() and (history["att"] > 0).all()
    # the baseline, and a term that needs no mask (GAIN's attention mining), never warn
    assert fit_warnings(masked_loader([]), lam=0.0)[1] == []
    assert fit_warnings(masked_loader([]), epochs=1, guidance="gain")[1] == []
