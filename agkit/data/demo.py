"""Deprecated: the old home of the demo datasets (goes in the next release); the code lives
in ``agkit.data.real.demo``."""

import warnings

from agkit.data.real.demo import DEMO_FORMATS, demo_synthfrac, write_demo_dataset  # noqa: F401

warnings.warn(
    "agkit.data.demo is now agkit.data.real.demo; the old module goes in the next release.",
    DeprecationWarning,
    stacklevel=2,
)
