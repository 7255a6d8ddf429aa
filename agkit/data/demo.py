"""Old home of the demo datasets, kept so that old imports keep working; the code now
lives in ``agkit.data.real.demo``."""

from agkit.data.real.demo import (DEMO_FORMATS, demo_synthfrac,  # noqa: F401
                                  write_demo_dataset)
