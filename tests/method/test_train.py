"""agkit.method.train: the step and the loop on a toy task; it learns, repeats bit for bit,
refuses bad input and stops on divergence."""

import copy
import dataclasses
import math
import re
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from toy import same_state, toy_loader, train

from agkit.engine.callbacks import Callback
from agkit.engine.guards import NonFiniteImages, TrainingDiverged
from agkit.guidance import CAMGuidance
from agkit.method.camnet import CAMNet
from agkit.method.loss import attention_guidance_loss, attention_loss_floor
from agkit.method.predict import evaluate
from agkit.method.train import (
    NothingToGuideWarning,
    TrainSettings,
    decay_step,
    fit,
    training_step,
)


def quiet_fit(model, loader, **kwargs):
    return fit(model, loader, device="cpu", callbacks=[], **kwargs)


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
    assert same_state(model_a, model_b)


def test_the_default_guidance_is_the_papers_cam_loss():
    by_default, _ = train(epochs=1)
    named, _ = train(epochs=1, guidance="cam")
    built, _ = train(epochs=1, guidance=CAMGuidance(resolution="feature", class_maps="all"))
    assert same_state(by_default, named) and same_state(by_default, built)
    other, _ = train(epochs=1, guidance=CAMGuidance(class_maps="label"))
    assert not same_state(by_default, other)


def test_the_baseline_does_not_compute_the_attention_loss_but_evaluate_measures_it():
    model, history = train(lam=0.0, epochs=1)
    assert history["att"].isna().all() and (history["att_floor"] > 0).all()
    assert {"val_accuracy", "val_auc", "val_mass_in_mask", "val_attention_loss"} <= set(history)
    # evaluate's attention loss: the paper's loss of each annotated image, averaged
    images, _, masks, _ = next(iter(toy_loader(seed=1, shuffle=False)))
    with torch.no_grad():
        cams = model.eval()(images).cams
    by_image = [
        attention_guidance_loss(cams[i : i + 1], masks[i : i + 1]).item() for i in range(16)
    ]
    scores = evaluate(
        model, DataLoader(TensorDataset(*next(iter(toy_loader(seed=1, shuffle=False)))), 16)
    )
    assert scores["attention_loss"] == pytest.approx(sum(by_image) / 16, rel=1e-5)


def test_baseline_step_is_the_cross_entropy_alone_with_the_floor_of_its_masks():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="avg")
    images, labels, masks, _ = batch = next(iter(toy_loader(shuffle=False)))
    before = copy.deepcopy(model)
    floor = attention_loss_floor(masks, (4, 4))  # 32 px at stride 8
    # One mask covers 8 x 8 pixels = 1 to 4 cells of the 4 x 4 grid: the floor is in [0, log 4].
    assert 0 <= floor <= math.log(4)
    losses = training_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.1), lam=0.0)
    assert math.isnan(losses["att"])
    assert losses["att_floor"] == pytest.approx(floor, abs=1e-12)
    assert losses["loss"] == losses["ce"]
    assert losses["ce"] == pytest.approx(F.cross_entropy(before(images).logits, labels).item())


def test_a_guided_step_is_ce_plus_lam_times_the_papers_loss():
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    twin = copy.deepcopy(model)
    images, labels, masks, _ = batch = next(iter(toy_loader(shuffle=False)))
    losses = training_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.1), lam=0.5)
    optimiser = torch.optim.SGD(twin.parameters(), lr=0.1)
    out = twin(images)
    ce, att = F.cross_entropy(out.logits, labels), attention_guidance_loss(out.cams, masks)
    (ce + 0.5 * att).backward()
    optimiser.step()
    assert losses["att"] == pytest.approx(att.item(), rel=1e-6)
    assert losses["loss"] == pytest.approx(ce.item() + 0.5 * att.item(), rel=1e-6)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_cam_term_refuses_batches_without_masks():
    images, labels, _, has = next(iter(toy_loader(shuffle=False)))
    model = CAMNet("tiny", 2, pooling="softmax")
    with pytest.raises(ValueError, match="needs masks in every batch"):
        training_step(
            model, (images, labels, None, has), torch.optim.SGD(model.parameters()), lam=1.0
        )


def test_nan_loss_stops_with_a_clear_message():
    model = CAMNet("tiny", 2)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        quiet_fit(model, toy_loader(), lam=0.0, epochs=1)


def test_labels_outside_the_classes_are_explained():
    images, labels, masks, has = next(iter(toy_loader()))
    bad = DataLoader(TensorDataset(images, labels + 5, masks, has), batch_size=8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        quiet_fit(CAMNet("tiny", 2), bad, epochs=1)


def test_empty_loader_raises_and_keeps_the_model():
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
        quiet_fit(model, empty, epochs=1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_guided_sgd_divergence_raises_training_diverged():
    model = CAMNet("tiny", 2, pooling="softmax")
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        quiet_fit(model, toy_loader(), lam=0.1, epochs=1, optimizer="sgd")


def test_infinite_cams_raise_training_diverged():
    model = CAMNet("tiny", 2, pooling="avg")
    with torch.no_grad():
        model.classifier.bias.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="NaN or inf"):
        quiet_fit(model, toy_loader(), lam=0.1, epochs=1)


def test_a_finite_but_exploding_loss_raises_training_diverged():
    """Adam at lr 100 ran to a loss of 4e9 and 'completed' at chance."""
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="avg")
    with pytest.raises(TrainingDiverged, match="over 100 times its value at chance"):
        quiet_fit(model, toy_loader(), lam=0.0, epochs=3, lr=100.0)


def test_an_attention_loss_past_its_bound_is_divergence():
    """The bound of the CAM term: 100 log P; a term that reports a larger value diverged."""
    masks = next(iter(toy_loader(shuffle=False)))[2]

    class Huge(CAMGuidance):
        def __call__(self, *args, **kwargs):
            return super().__call__(*args, **kwargs) * 0 + 1e4

    model = CAMNet("tiny", 2, pooling="softmax")
    assert Huge().bound(masks, model(masks)) == pytest.approx(100 * math.log(16))
    with pytest.raises(TrainingDiverged, match="over 100 times"):
        quiet_fit(model, toy_loader(), lam=0.1, epochs=1, guidance=Huge())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_images_are_a_data_problem_naming_the_image(bad):
    images, labels, masks, has = next(iter(toy_loader(shuffle=False)))
    images = images.clone()
    images[3, 0, 5, 5] = bad
    loader = DataLoader(TensorDataset(images, labels, masks, has), batch_size=8)
    with pytest.raises(NonFiniteImages, match="image 3 ") as info:
        quiet_fit(CAMNet("tiny", 2), loader, epochs=1)
    assert "data problem" in str(info.value) and "batch 1" in str(info.value)
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
        model, batch, torch.optim.SGD(model.parameters(), lr=0.1), lam=0.5, guidance=term
    )
    (call,) = term.calls
    assert call["images_grad"] and torch.equal(call["forbidden"], batch[4])
    assert torch.equal(call["labels"], batch[1]) and torch.equal(call["has_mask"], batch[3])
    assert call["out"].cams.requires_grad
    assert not batch[0].requires_grad  # the caller's tensor is left alone
    assert math.isnan(losses["att_floor"])  # a plain callable does not know its floor
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


def test_a_term_is_not_called_at_lam_zero():
    term = RecordingTerm()
    model = CAMNet("tiny", 2, pooling="softmax")
    losses = training_step(
        model, five_element_batch(), torch.optim.SGD(model.parameters()), lam=0.0, guidance=term
    )
    assert term.calls == [] and math.isnan(losses["att"])


def test_the_history_names_the_term_with_its_settings():
    _, history = train(epochs=1, guidance=RecordingTerm())
    assert history.attrs["config"]["guidance"] == "recording"
    _, history = train(epochs=1)
    assert (
        history.attrs["config"]["guidance"] == "CAMGuidance(resolution='feature', class_maps='all')"
    )


def test_decay_step_divides_the_rate_once_after_the_share_of_the_epochs():
    assert decay_step(8, 0.75) == 6 and decay_step(12, 0.75) == 9
    assert decay_step(1, 0.75) == 1  # never 0, which StepLR refuses
    assert decay_step(8, None) is None and decay_step(8, 0) is None


def test_callbacks_see_every_hook_in_order():
    class Recorder(Callback):
        def __init__(self):
            self.seen = []

        def on_fit_start(self, state):
            self.seen.append("fit_start")

        def on_epoch_start(self, state):
            self.seen.append(f"epoch_start {state.epoch}")

        def on_batch_end(self, state, losses):
            if not self.seen[-1].startswith("batches"):
                self.seen.append("batches")

        def on_epoch_end(self, state, row):
            self.seen.append(f"epoch_end {row['epoch']}")

        def on_fit_end(self, state):
            self.seen.append(f"fit_end recalibrated={state.recalibrated}")

    recorder = Recorder()
    train(epochs=2, callbacks=[recorder])
    assert recorder.seen == [
        "fit_start",
        "epoch_start 0",
        "batches",
        "epoch_end 1",
        "epoch_start 1",
        "batches",
        "epoch_end 2",
        "fit_end recalibrated=True",
    ]


# ------------------------------------------------------------------ lam and empty masks


@pytest.mark.parametrize("lam", [-1.0, -1e-3, float("nan"), float("inf"), "0.1", True])
def test_fit_and_training_step_refuse_a_negative_or_non_finite_lam(lam):
    """Before: lam=-1 and lam=nan trained the baseline without a word (lam > 0 was False)."""
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0 .*got"):
        quiet_fit(model, toy_loader(), lam=lam, epochs=1)
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
    torch.manual_seed(0)
    model = CAMNet("tiny", 2, pooling="softmax")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = quiet_fit(model, loader, lam=lam, epochs=epochs, **kwargs)
    said = [str(w.message) for w in caught if w.category is NothingToGuideWarning]
    return history, said


def test_fit_warns_once_when_no_image_in_the_loader_had_a_mask():
    """Before: the CAM term with all-empty masks trained the baseline without a word."""
    history, said = fit_warnings(masked_loader([]))
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


def test_fit_refuses_an_unknown_setting_and_names_those_it_knows():
    model = CAMNet("tiny", 2, pooling="softmax")
    with pytest.raises(
        TypeError, match=r"unknown setting\(s\) learning_rate; the settings are lam"
    ):
        quiet_fit(model, toy_loader(), learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        quiet_fit(model, toy_loader(), optimizer="rmsprop")
    with pytest.raises(ValueError, match="lam must be a finite number"):
        TrainSettings(lam=-1.0)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"epochs": 0}, "epochs must be a whole number >= 1, got 0; a run of no epochs"),
        ({"epochs": 2.5}, "epochs must be a whole number >= 1, got 2.5"),
        ({"lr": float("nan")}, "lr must be a finite number >= 0, got nan"),
        ({"lr": -0.1}, "lr must be a finite number >= 0"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number >= 0"),
        ({"momentum": "high"}, "momentum must be a finite number >= 0, got 'high'"),
        ({"lr_gamma": 0.0}, "lr_gamma must be a finite number above 0, got 0.0"),
        ({"optimizer": "sgd", "momentum": 1.5}, "momentum must be a number from 0 to 1, got 1.5"),
    ],
)
def test_fit_names_a_setting_no_run_can_use_before_it_trains(setting, message):
    model = CAMNet("tiny", 2, pooling="avg")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=re.escape(message)):
        quiet_fit(model, toy_loader(), **setting)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_run_config_holds_every_setting_but_the_epochs():
    """A resumed run compares this config: every TrainSettings field must be in it, and the
    epochs must not (a resumed run may train longer)."""
    _, history = train(epochs=1, lam=2.0, seed=4)
    config = history.attrs["config"]
    assert {f.name for f in dataclasses.fields(TrainSettings)} - {"epochs"} <= set(config)
    assert "epochs" not in config and config["lam"] == 2.0 and config["seed"] == 4
    assert config["guidance"] == "CAMGuidance(resolution='feature', class_maps='all')"


def test_sgd_uses_its_momentum_and_the_step_schedule_divides_the_rate():
    model = CAMNet("tiny", 2, pooling="softmax")
    history = quiet_fit(
        model, toy_loader(), epochs=3, optimizer="sgd", lr=0.1, momentum=0.5, lr_step=2
    )
    assert history["lr"].tolist() == pytest.approx([0.1, 0.1, 0.01])
