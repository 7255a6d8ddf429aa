"""Several processes, one model: DistributedDataParallel for ``agkit.method.train.fit``.

``torchrun --nproc-per-node N -m agkit train CONFIG`` starts N copies of the command. Each
joins one process group (``setup``: gloo on CPUs, nccl on GPUs, one GPU per process), wraps
its model in DistributedDataParallel (``wrap``) and trains on its share of every batch
(``shard_loader``). DDP averages the gradients of the one ``loss.backward()`` of each step
over the processes, so every process takes the same optimiser step.

What makes N processes train like one process on the same global batches:

* ``ShardSampler`` gives process r the items r, r + N, r + 2N, ... of the one seeded order
  the single-process loader would draw, and each process takes batch_size / N of them: the
  union of the N shards of step k is the global batch k.
* The double-backward terms (``rrr``, ``gradcam``) take their input gradients with
  ``torch.autograd.grad(..., create_graph=True)``, which fills no ``.grad`` and fires none of
  DDP's hooks; the step's single backward then carries both parts to DDP.
* BatchNorm normalises with the statistics of the batch it sees: the shard, not the global
  batch. ``sync_bn`` (GPU only) converts it to SyncBatchNorm, whose statistics are those of
  the global batch.
* Losses that normalise by something other than the batch size (the paper's attention loss
  divides by the masks' area in the batch) weigh the shards by their size instead of their
  area: the same average when the shards hold equal mask areas, close otherwise.

Only process 0 (``is_main``) writes checkpoints, logs and results.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in process 0, the one that writes files (and in a single process)."""
    return rank() == 0


def setup(device: str) -> torch.device:
    """Join the process group torchrun described in the environment; returns this
    process's device: cuda:LOCAL_RANK with nccl when ``device`` is "cuda", else cpu with
    gloo."""
    local_rank = int(os.environ["LOCAL_RANK"])
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=datetime.timedelta(minutes=30))
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=30))
    return torch.device("cpu")


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def wrap(model: nn.Module, device: torch.device, *, sync_bn: bool = False) -> nn.Module:
    """The model in DistributedDataParallel (unchanged in a single process).

    sync_bn: convert BatchNorm layers to SyncBatchNorm first (needs CUDA).
    """
    if not is_distributed():
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


class ShardSampler(Sampler):
    """This process's share of another sampler's sequence: items rank, rank + N, ...

    The sequence is padded by repeating its first items so that every process gets
    ceil(n / N) of them (as torch's DistributedSampler does). ``generator`` is the base
    sampler's, so ``fit`` reseeds it each epoch as it reseeds a plain loader.
    """

    def __init__(self, base: Any, rank: int, world: int):
        self.base, self.rank, self.world = base, rank, world

    @property
    def generator(self) -> torch.Generator | None:
        return getattr(self.base, "generator", None)

    def __len__(self) -> int:
        return math.ceil(len(self.base) / self.world)

    def __iter__(self) -> Iterator[Any]:
        items = list(self.base)
        items += items[: len(self) * self.world - len(items)]
        return iter(items[self.rank :: self.world])


def shard_loader(
    loader: DataLoader, *, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """``loader`` for this process: its shard of the samples, batch_size / N per batch.

    Returns ``loader`` itself when there is one process and nothing changes. Raises
    ValueError when the batch size is not a multiple of the number of processes.
    """
    world = world_size()
    if world == 1 and num_workers == loader.num_workers and pin_memory == loader.pin_memory:
        return loader
    batch_size = loader.batch_size or 1
    if batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} is not a multiple of the {world} processes; choose a "
            f"batch_size that {world} divides (each process takes batch_size / {world})."
        )
    sampler = loader.sampler if world == 1 else ShardSampler(loader.sampler, rank(), world)
    return DataLoader(
        loader.dataset,
        batch_size=batch_size // world,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        persistent_workers=num_workers > 0,
    )


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")


def _nccl() -> bool:
    return is_distributed() and dist.get_backend() == "nccl"


def reduce_sums(sums: dict[str, float], steps: int) -> tuple[dict[str, float], int]:
    """Sums of per-step values and the step count, added up over the processes.

    With equal shards the result divided by the steps is the mean over every step of
    every process. Unchanged in a single process.
    """
    if not is_distributed():
        return sums, steps
    values = torch.tensor([*sums.values(), steps], dtype=torch.float64)
    values = values.to(_collective_device())
    dist.all_reduce(values)
    *totals, count = values.tolist()
    return dict(zip(sums, totals, strict=True)), int(round(count))


def broadcast_buffers(model: nn.Module) -> None:
    """Copy process 0's buffers (BatchNorm statistics) to every process."""
    if not is_distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
