"""How fast SynthFrac draws images on one CPU core.

    python benchmarks/synth_speed.py            # 64 px, 2000 images, best of 3
    python benchmarks/synth_speed.py --size 128 --n 500

Prints images per second. The course needs >= 1000 images/s at 64 x 64 on one core, so
that a notebook can make fresh data sets without waiting.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, also for NumPy's BLAS

import torch  # noqa: E402
from arguments import at_least  # noqa: E402  (benchmarks/arguments.py)

from agkit.data.synthetic import make_synthfrac  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=at_least(1), default=2000, help="images per run")
    parser.add_argument("--size", type=int, default=64, help="side length in pixels")
    parser.add_argument("--repeats", type=at_least(1), default=3, help="runs; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(1)

    make_synthfrac(64, size=args.size)  # warm-up: imports, caches
    times = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        make_synthfrac(args.n, size=args.size, seed=seed)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(
        f"SynthFrac {args.size}x{args.size}: {args.n / best:,.0f} images/s on one core "
        f"(best of {args.repeats}: {best:.2f} s for {args.n} images; "
        f"all runs {', '.join(f'{t:.2f}' for t in times)} s)"
    )


if __name__ == "__main__":
    main()
