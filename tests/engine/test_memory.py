"""keep_freed_memory: freed blocks are reused instead of faulted in again."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from agkit import experiments
from agkit.engine.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
model = experiments.build_model(experiments.baseline_config(experiments.get_profile("workshop"), 0))
images = torch.rand(32, 1, 64, 64)
def step():  # a training step of the workshop network: activations and gradients, freed after
    model(images).logits.sum().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode, env=None):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_kept_memory_is_reused_without_page_faults():
    kept, faults_kept = _faults("keep")
    if not kept:
        pytest.skip("the C library is not glibc")
    _, faults_default = _faults("default")
    assert faults_kept * 10 < faults_default, (faults_kept, faults_default)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_users_own_malloc_settings_win():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "1000000"}
    kept, _ = _faults("keep", env)
    assert not kept
