"""Instant checks for the coding exercises of the course notebooks.

Each ``check_*`` function takes the student's function, runs it on small fixed inputs,
compares the result (and, for what is trained, its gradient) with the kit's own
implementation and prints one line: ``✓`` and what is right, or ``✗`` and one sentence
naming the mistake without giving the answer away. A check never raises, so "Run all" goes
on past an exercise that is not done yet; ``check_x.verdict(fn)`` returns
``(passed, message)`` instead of printing (the tests use it).

While the student's function runs, the kit's own implementation of the exercise is swapped
for a tripwire (in its module, its re-exports and the student's namespace), so a function
that only calls it is told to write the exercise itself. An error raised by the student's
code is reported with the line of their cell it came from.

The machinery: ``runner`` (the ``_check`` decorator and the call of the student's function),
``tripwires`` (catching a call to the kit), ``feedback`` (the Hint and where an error came
from), ``answers`` (reading and comparing results) and ``inputs`` (the fixed inputs). The
checks, one module per notebook: ``notebook01`` ... ``notebook06``.
"""

from agkit.course.exercises.feedback import Hint
from agkit.course.exercises.notebook01 import (
    check_average_pooling,
    check_cam,
    check_mass_in_mask,
)
from agkit.course.exercises.notebook02 import check_box_mask, check_mask_iou, check_pointing_game
from agkit.course.exercises.notebook03 import (
    check_attention_loss,
    check_softmax_pooling,
    check_training_step,
)
from agkit.course.exercises.notebook03_propagation import check_propagation_step
from agkit.course.exercises.notebook04 import check_bootstrap_interval, check_box_from_mask
from agkit.course.exercises.notebook05 import check_sensitivity_specificity, check_uniform_chance
from agkit.course.exercises.notebook06 import check_forbidden_loss, check_rrr_penalty

__all__ = [
    "Hint",
    "check_cam",
    "check_average_pooling",
    "check_mass_in_mask",
    "check_box_mask",
    "check_pointing_game",
    "check_mask_iou",
    "check_softmax_pooling",
    "check_attention_loss",
    "check_training_step",
    "check_propagation_step",
    "check_bootstrap_interval",
    "check_box_from_mask",
    "check_sensitivity_specificity",
    "check_uniform_chance",
    "check_forbidden_loss",
    "check_rrr_penalty",
]
