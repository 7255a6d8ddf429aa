"""Time of one guided training step over one baseline step, same model and batch.

Steps are measured alternately in one process (baseline, guided, baseline, ...) so that
machine noise hits both equally; the script prints the median ratio. Goal: <= 1.10 at
"feature" resolution. "input" resolution (the paper's Eq. 4) is printed for comparison.
As in ``fit``, the baseline step also measures the attention loss without gradients (the
history's ``att`` column), so the ratio is that of the steps a course run really takes.

    python benchmarks/step_ratio.py [--backbone tiny] [--size 64] [--batch 64] [--repeats 30]
"""

import argparse
import statistics
import time

import torch

from agkit.method.camnet import CAMNet
from agkit.method.train import training_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    images = torch.rand(args.batch, 1, args.size, args.size)
    labels = torch.arange(args.batch) % 2
    masks = torch.zeros(args.batch, 1, args.size, args.size)
    masks[:, :, args.size // 4 : 3 * args.size // 4, args.size // 3 : 2 * args.size // 3] = 1
    batch = (images, labels, masks, torch.ones(args.batch, dtype=torch.bool))
    model = CAMNet(args.backbone, 2, pooling="softmax")
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-4)

    def seconds(lam, resolution):
        start = time.perf_counter()
        training_step(model, batch, optimiser, lam=lam, resolution=resolution)
        return time.perf_counter() - start

    for _ in range(3):  # warm-up
        seconds(0.0, "feature"), seconds(0.1, "feature"), seconds(0.1, "input")
    times = {"baseline": [], "feature": [], "input": []}
    for _ in range(args.repeats):
        times["baseline"].append(seconds(0.0, "feature"))
        times["feature"].append(seconds(0.1, "feature"))
        times["input"].append(seconds(0.1, "input"))

    base = statistics.median(times["baseline"])
    print(f"backbone={args.backbone} size={args.size} batch={args.batch} threads={args.threads}")
    print(f"baseline step: {base * 1e3:.1f} ms  ({args.batch / base:.0f} images/s)")
    for resolution in ("feature", "input"):
        ratios = [g / b for g, b in zip(times[resolution], times["baseline"], strict=True)]
        goal = "  (goal <= 1.10)" if resolution == "feature" else ""
        print(
            f"guided/baseline step time, {resolution} resolution: "
            f"{statistics.median(ratios):.3f}{goal}"
        )


if __name__ == "__main__":
    main()
