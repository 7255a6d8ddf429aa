import os

import pytest
import torch

# Two shared CPU cores: one thread per test process keeps timings sane and results exact.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)
