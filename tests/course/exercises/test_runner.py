"""The machinery every check shares (agkit.course.exercises.runner, tripwires, feedback):
there are sixteen checks, a call to the kit's own implementation is caught and everything is
put back, no message names a solving function, and an error in the student's code points at
their line."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_testing import blank, cell, fails_with, passes, verdict

from agkit.course import exercises
from agkit.method.loss import attention_guidance_loss

# --------------------------------------------------------------- the kit's own code

CHEATS = {
    "check_propagation_step": (
        "from agkit.propagation.segmenter import masks_from_probabilities\n"
        "def cheat(probs, size):\n"
        "    return masks_from_probabilities(probs, size)\n"
    ),
    "check_cam": (
        "from types import SimpleNamespace\n"
        "from agkit.method.camnet import CAMNet\n"
        "def cam(features, weight, bias):\n"
        "    fake = SimpleNamespace(classifier=SimpleNamespace(weight=weight, bias=bias))\n"
        "    return CAMNet.cams_from_features(fake, features)\n"
    ),
    "check_average_pooling": (
        "from agkit.method.camnet import pool_cams\n"
        "def cheat(cams):\n"
        "    return pool_cams(cams, 'avg')\n"
    ),
    "check_mass_in_mask": (
        "from agkit.method import metrics\n"
        "def cheat(cams, masks, classes):\n"
        "    return metrics.mass_in_mask(cams, masks, classes)\n"
    ),
    "check_box_mask": (
        "from agkit.data import rasterize_boxes\n"
        "def cheat(box, height, width):\n"
        "    return torch.as_tensor(rasterize_boxes([box], (height, width)))\n"
    ),
    "check_pointing_game": (
        "from agkit.method.metrics import pointing_game as pg\n"
        "def cheat(cams, masks, classes):\n"
        "    return pg(cams, masks, classes)\n"
    ),
    "check_mask_iou": (
        "from agkit.method import metrics\n"
        "def cheat(a, b):\n"
        "    return float(metrics.cam_iou(a[None, None], b[None, None], torch.zeros(1).long()))\n"
    ),
    "check_softmax_pooling": (
        "import agkit.method.camnet\n"
        "def cheat(cams):\n"
        "    return agkit.method.camnet.pool_cams(cams, 'softmax')\n"
    ),
    "check_attention_loss": (
        "from agkit import attention_guidance_loss\n"  # the re-export
        "def cheat(cams, masks):\n"
        "    try:\n"
        "        return attention_guidance_loss(cams, masks)\n"
        "    except Exception:\n"  # a broad except does not hide the tripwire
        "        return attention_guidance_loss(cams, masks)\n"
    ),
    "check_training_step": (
        "from agkit.method.train import training_step as ts\n"
        "def cheat(model, images, labels, masks, optimizer, lam):\n"
        "    has = masks.flatten(1).amax(1) > 0\n"
        "    return ts(model, (images, labels, masks, has), optimizer, lam=lam)['loss']\n"
    ),
    "check_box_from_mask": (
        "def cheat(masks):\n"
        "    from agkit.data.mask_quality import bounding_boxes\n"  # imported while it runs
        "    return bounding_boxes(masks)\n"
    ),
    "check_sensitivity_specificity": (
        "from agkit.method.metrics import classification_metrics\n"
        "def cheat(labels, predicted):\n"
        "    scores = classification_metrics(labels.numpy(), np.eye(2)[predicted.numpy()])\n"
        "    return scores['sensitivity'], scores['specificity']\n"
    ),
    "check_uniform_chance": (
        "from agkit.method import metrics\n"
        "def cheat(masks, cam_size):\n"
        "    return metrics.chance_levels(masks, cam_size, draws=1)['uniform']['mass_in_mask']\n"
    ),
    "check_forbidden_loss": (
        "from agkit.guidance import ForbiddenGuidance\n"
        "from agkit.method.camnet import CAMOutput\n"
        "def cheat(cams, region):\n"
        "    out = CAMOutput(cams.mean(dim=(2, 3)), cams)\n"
        "    return ForbiddenGuidance()(None, None, None, None, None, out, region)\n"
    ),
    "check_rrr_penalty": (
        "from agkit.guidance import RRRGuidance\n"
        "def cheat(model, images, region):\n"
        "    x = images.detach().requires_grad_(True)\n"
        "    return RRRGuidance()(model, x, None, None, None, model(x), region)\n"
    ),
}
CHECKS = sorted(name for name in dir(exercises) if name.startswith("check_"))
MODULES = sorted(Path(exercises.__file__).parent.glob("*.py"))


def test_there_are_sixteen_checks_and_a_cheat_for_each_with_a_kit_implementation():
    assert len(CHECKS) == 16
    without = {name for name in CHECKS if not getattr(exercises, name).uses}
    assert without == {"check_bootstrap_interval"}  # the kit has no bootstrap of its own
    assert set(CHEATS) == set(CHECKS) - without


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_every_check_rejects_a_call_to_the_kits_implementation(name):
    source = CHEATS[name]
    fn_name = source.split("def ")[1].split("(")[0]
    namespace = {"torch": torch, "F": F, "np": np}
    exec(compile(source, "/tmp/ipykernel_1/cheat.py", "exec"), namespace)
    before = dict(namespace)
    message = fails_with(getattr(exercises, name), namespace[fn_name], "write it yourself")
    assert "kit's own implementation" in message
    assert namespace == before, "the student's names are put back"


def test_the_kits_function_passed_itself_is_caught_and_everything_is_put_back():
    import agkit
    import agkit.guidance.cam
    import agkit.method.loss

    original = agkit.method.loss.attention_guidance_loss
    fails_with(exercises.check_attention_loss, attention_guidance_loss, "write it yourself")
    fails_with(exercises.check_attention_loss, lambda c, m: original(c, m), "write it yourself")
    assert agkit.method.loss.attention_guidance_loss is original
    assert agkit.attention_guidance_loss is original
    assert agkit.guidance.cam.attention_guidance_loss is original
    assert globals()["attention_guidance_loss"] is original
    assert float(original(torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 8, 8))) > 0


def test_the_training_step_may_use_the_kits_attention_loss():
    # notebook 03 imports it for this exercise ("or your attention_loss from exercise 2")
    source = (
        "from agkit.method.loss import attention_guidance_loss\n"
        "def training_step(model, images, labels, masks, optimizer, lam):\n"
        "    out = model(images)\n"
        "    loss = F.cross_entropy(out.logits, labels)"
        " + lam * attention_guidance_loss(out.cams, masks)\n"
        "    optimizer.zero_grad()\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    return loss.item()\n"
    )
    passes(exercises.check_training_step, cell(source, "training_step"))


def _message_strings() -> list[str]:
    """Every string literal of the modules of agkit/course/exercises/ but docstrings and the
    ``uses=`` lists."""
    return [text for path in MODULES for text in _module_strings(path)]


def _module_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "uses":
            skip |= {id(n) for n in ast.walk(node.value)}
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    ]


def test_no_message_names_a_function_that_would_solve_an_exercise():
    import re

    names = set()
    for name in CHECKS:
        for owner, attribute in getattr(exercises, name).uses:
            names.add(owner.__name__ if attribute.startswith("__") else attribute)
            if isinstance(owner, type):
                names.add(owner.__name__)
    names -= {"CAMNet"}  # the model the exercises rebuild is named, not a solving function
    assert {"pool_cams", "mass_in_mask", "attention_guidance_loss", "ForbiddenGuidance"} <= names
    strings = _message_strings()
    assert len(strings) > 100
    for text in strings:
        for name in names:
            assert not re.search(rf"\b{re.escape(name)}\b", text), (name, text)


# ------------------------------------------------------------- errors in the student's code


def cam(features, weight, bias):  # a right answer to notebook 01's first exercise
    return torch.einsum("nk,bkhw->bnhw", weight, features) + bias[None, :, None, None]


def test_an_error_in_the_students_code_names_their_line():
    fn = cell(
        "def attention_loss(cams, masks):\n"
        "    small = F.adaptive_max_pool2d(masks, cams.shape[-2:])\n"
        "    return torch.einsum('bnp,bnp->', small.flatten(2), cams.flatten(1))\n",
        "attention_loss",
    )
    message = fails_with(
        exercises.check_attention_loss,
        fn,
        "your function raised RuntimeError at line 3 of your cell",
    )
    assert not any(path.name in message for path in MODULES) and "functional.py" not in message


def test_an_error_in_a_helper_names_the_helper_and_its_line():
    namespace = {"torch": torch, "F": F}
    exec(
        compile("def helper(x):\n    return x / 0\n", "/tmp/ipykernel_1/a.py", "exec"),
        namespace,
    )
    exec(
        compile("def mask_iou(a, b):\n    return helper(1)\n", "/tmp/ipykernel_1/b.py", "exec"),
        namespace,
    )
    fails_with(
        exercises.check_mask_iou,
        namespace["mask_iou"],
        "your function raised ZeroDivisionError at line 2 of your cell (in helper)",
    )


def test_not_written_yet():
    def todo(*args):
        raise NotImplementedError

    fails_with(exercises.check_cam, todo, "not written yet")


def test_a_check_leaves_the_random_state_of_the_notebook_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_cam.verdict(cam)  # seeds its own model and inputs inside
    assert torch.equal(torch.rand(3), expected)


def test_every_check_fails_on_a_blank_with_one_line():
    for name in CHECKS:
        passed, message = verdict(getattr(exercises, name), blank)
        assert not passed and message.startswith("✗"), (name, message)
