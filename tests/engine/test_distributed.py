"""DistributedDataParallel through agkit.method.train.fit: two CPU processes (gloo) train exactly
like one process on the same global batches.

BatchNorm is the one layer whose output depends on how a batch is split: each process
normalises with the statistics of its own shard (SyncBatchNorm fixes that, but has no CPU
kernel). So the equality tests swap the tiny backbone's BatchNorm layers for GroupNorm with
one group, which normalises each image by itself: then nothing in the network depends on
the split and the weights must agree to float rounding. The paper's attention loss divides
by the masks' area in the batch, so the batches give both shards equal mask areas (the
areas still differ from pair to pair of images). A control shows the comparison has teeth:
training on one shard alone ends elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from agkit.engine import distributed
from agkit.method.camnet import CAMNet
from agkit.method.train import fit

ROOT = Path(__file__).resolve().parents[2]
TERMS = {"cam": "softmax", "rrr": "avg", "gradcam": "avg"}
N, GLOBAL_BATCH, SIZE, EPOCHS = 16, 8, 32, 2


def batchnorm_free(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d replaced by a per-image GroupNorm(1, C) (see the module docstring)."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, nn.GroupNorm(1, child.num_features))
        else:
            batchnorm_free(child)
    return model


def make_model(term: str) -> CAMNet:
    torch.manual_seed(0)
    return batchnorm_free(CAMNet("tiny", 2, in_channels=1, pooling=TERMS[term]))


def make_data() -> TensorDataset:
    """16 images with masks and forbidden regions; images 2k and 2k + 1 (one in each
    process's shard) have masks of the same area in different places; the area alternates
    with k."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(N, 1, SIZE, SIZE, generator=g)
    labels = torch.arange(N) % 2
    masks = torch.zeros(N, 1, SIZE, SIZE)
    forbidden = torch.zeros(N, 1, SIZE, SIZE)
    for i in range(N):
        # whole cells of the 4 x 4 CAM grid (8 px), where the loss counts the mask's area
        side, top = 8 * (1 + i // 2 % 2), 8 * (i % 2)
        masks[i, :, top : top + side, 8 : 8 + side] = 1
        forbidden[i, :, -6:, -6 - i % 3 :] = 1
    return TensorDataset(images, labels, masks, torch.ones(N, dtype=torch.bool), forbidden)


def train(term: str, loader, model=None):
    model = model if model is not None else make_model(term)
    history = fit(
        model,
        loader,
        lam=1.0,
        epochs=EPOCHS,
        # SGD: its step is linear in the gradient. Adam divides by the root of the squared
        # gradient, which turns float rounding in gradients near zero into steps of size lr.
        optimizer="sgd",
        lr=0.02,
        guidance=term,
        device="cpu",
        callbacks=[],
        recalibrate_bn=False,
    )
    return distributed.unwrap(model), history


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        results = {}
        for term in TERMS:
            loader = distributed.shard_loader(DataLoader(make_data(), batch_size=GLOBAL_BATCH))
            assert loader.batch_size == GLOBAL_BATCH // world
            model = distributed.wrap(make_model(term), torch.device("cpu"))
            net, history = train(term, loader, model)
            results[term] = {"state": net.state_dict(), "loss": list(history["loss"])}
        if rank == 0:
            torch.save(results, out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """What the two processes of a DDP run ended with, per term (process 0's copy)."""
    folder = tmp_path_factory.mktemp("ddp")
    out = folder / "results.pt"
    mp.spawn(_worker, args=(2, str(folder / "init"), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("term", list(TERMS))
def test_two_processes_train_like_one_on_the_same_global_batches(two_processes, term):
    torch.set_num_threads(1)
    net, history = train(term, DataLoader(make_data(), batch_size=GLOBAL_BATCH))
    ddp = two_processes[term]
    start = make_model(term).state_dict()
    assert not torch.allclose(net.classifier.weight, start["classifier.weight"])  # it trained
    for key, value in net.state_dict().items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # the history's losses are means over both processes: the single process's means
    assert ddp["loss"] == pytest.approx(list(history["loss"]), rel=1e-5)


@pytest.mark.parametrize("term", list(TERMS))
def test_one_shard_alone_trains_elsewhere(two_processes, term):
    """The control: process 0's shard on its own (no gradient averaging) ends elsewhere."""
    torch.set_num_threads(1)
    shard = torch.utils.data.Subset(make_data(), range(0, N, 2))
    net, _ = train(term, DataLoader(shard, batch_size=GLOBAL_BATCH // 2))
    weight = "classifier.weight"
    assert not torch.allclose(two_processes[term]["state"][weight], net.state_dict()[weight])


def test_shard_sampler_splits_each_global_batch_between_the_processes():
    base = list(range(10))
    shards = [list(distributed.ShardSampler(base, r, 2)) for r in range(2)]
    assert shards == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    # 3 processes: padded with the first items so each gets ceil(10 / 3) = 4
    shards = [list(distributed.ShardSampler(base, r, 3)) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]


def test_torchrun_trains_the_ci_config_with_two_processes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "agkit", "train", "configs/ci.toml"]
    command += ["--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert metrics["n_shifted"] == 96 and 0 <= metrics["accuracy_shifted"] <= 1
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    # one process's share of the global batch of 32, and the plain model's keys
    assert state["config"]["batch_size"] == 16
    assert not any(key.startswith("module.") for key in state["model"])
    assert done.stdout.count("written to") == 1  # process 1 prints nothing
