"""agkit.engine.device: the device a run trains on, and its CPU threads."""

import pytest
import torch

from agkit.engine.device import resolve_device, threads


def test_auto_is_a_gpu_when_there_is_one_else_the_cpu():
    expected = "cuda" if torch.cuda.is_available() else None
    assert resolve_device("auto") == resolve_device(None)
    if expected:
        assert resolve_device("auto").type == expected
    elif not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_missing_gpu_says_so():
    with pytest.raises(ValueError, match="sees no CUDA GPU; use device='auto' or 'cpu'"):
        resolve_device("cuda")


def test_a_device_name_torch_does_not_know_is_named_with_the_choices():
    for name in ("tpu", "gpu", "cuda0"):
        with pytest.raises(ValueError, match=f"device '{name}' is not a device torch knows"):
            resolve_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without mps")
def test_asking_for_a_missing_apple_gpu_says_so():
    with pytest.raises(ValueError, match="sees no Apple GPU; use device='auto' or 'cpu'"):
        resolve_device("mps")


def test_threads_are_set_for_the_block_and_restored():
    before = torch.get_num_threads()
    with threads(1, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
