"""Time of one guided training step over one baseline step, same model and batch.

The steps take turns in one process (``agkit.engine.timing``, the kit's one step-time
measure: the median over rounds of each step's time over the baseline's in that round), so
machine noise hits them alike. The baseline step is plain cross-entropy (at lam = 0 the
guidance term is not computed), the guided one adds the paper's loss. Goal: <= 1.10 at
"feature" resolution; "input" resolution (the paper's Eq. 4) is printed for comparison.

    python benchmarks/step_ratio.py [--backbone tiny] [--size 64] [--batch 64] [--repeats 30]
"""

import argparse
import functools

import torch
from arguments import at_least  # benchmarks/arguments.py

from agkit.engine.device import set_threads
from agkit.engine.timing import step_times
from agkit.guidance import CAMGuidance
from agkit.method.camnet import CAMNet
from agkit.method.train import training_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--size", type=at_least(32), default=64)
    parser.add_argument("--batch", type=at_least(2), default=64)  # both classes in a batch
    parser.add_argument("--repeats", type=at_least(1), default=30)
    parser.add_argument("--threads", type=at_least(1), default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)

    images = torch.rand(args.batch, 1, args.size, args.size)
    labels = torch.arange(args.batch) % 2
    masks = torch.zeros(args.batch, 1, args.size, args.size)
    masks[:, :, args.size // 4 : 3 * args.size // 4, args.size // 3 : 2 * args.size // 3] = 1
    batch = (images, labels, masks, torch.ones(args.batch, dtype=torch.bool))
    model = CAMNet(args.backbone, 2, pooling="softmax")
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step(lam, resolution):
        guidance = CAMGuidance(resolution=resolution)
        return functools.partial(training_step, model, batch, optimiser, lam=lam, guidance=guidance)

    times = step_times(
        {
            "baseline": step(0.0, "feature"),
            "feature": step(0.1, "feature"),
            "input": step(0.1, "input"),
        },
        repeats=args.repeats,
        warmup=3,
    )
    base = times.medians()["baseline"]
    ratios = times.ratios()
    print(f"backbone={args.backbone} size={args.size} batch={args.batch} threads={args.threads}")
    print(f"baseline step: {base * 1e3:.1f} ms  ({args.batch / base:.0f} images/s)")
    for resolution in ("feature", "input"):
        goal = "  (goal <= 1.10)" if resolution == "feature" else ""
        print(f"guided/baseline step time, {resolution} resolution: {ratios[resolution]:.3f}{goal}")


if __name__ == "__main__":
    main()
