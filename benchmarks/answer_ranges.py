"""How far the course's measured numbers move across seeds and machines, for the answer key.

    python benchmarks/answer_ranges.py --profile ci --threads 1 2 --out docs/answer_ranges.json

The main comparison of notebook 3 (lambda chosen on validation, then baseline and guided
over the profile's seeds) is trained once per thread count, each time into a fresh runs
folder, one run after another in this process with ``torch.set_num_threads(n)``. A thread
count changes the order of floating-point sums inside the convolutions, the same kind of
difference another CPU or library build makes, so the spread over thread counts stands in
for the spread over machines; the spread over seeds is the one a room of students sees.

The JSON holds one entry per profile (measuring another profile keeps the others), each with
one row per run (method, seed, threads, lambda and every score), so ``tools/answer_key.py``
can print min-max per metric and say what they are over.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from agkit import experiments

METRICS = (
    "accuracy_id",
    "accuracy_shifted",
    "auc_shifted",
    "mass_in_mask",
    "pointing_game_shifted",
    "accuracy_val",
    "mass_in_mask_val",
)


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def measure(profile_name: str, threads: int, runs: Path) -> tuple[float, list[dict]]:
    """Train the main comparison with ``threads`` threads; the chosen lambda and one row per run."""
    torch.set_num_threads(threads)
    profile = experiments.get_profile(profile_name)
    candidates = [
        experiments.guided_config(profile, lam, profile.seeds[0]) for lam in profile.lambdas
    ]
    for config in candidates:  # one after another, in this process: the thread count holds
        experiments.run(config, runs, progress=False)
    lam, _ = experiments.choose_lambda(profile, runs, progress=False)
    for seed in profile.seeds:
        for config in (
            experiments.baseline_config(profile, seed),
            experiments.guided_config(profile, lam, seed),
        ):
            experiments.run(config, runs, progress=False)
    table = experiments.main_comparison(profile, runs, progress=False)  # all stored: reads only
    rows = []
    for _, row in table.iterrows():
        rows.append(
            {
                "method": row["method"],
                "seed": int(row["seed"]),
                "threads": threads,
                "lam": float(row["lam"]),
                **{m: float(row[m]) for m in METRICS if m in row},
            }
        )
    return lam, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", choices=["ci", "workshop", "full"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("docs/answer_ranges.json"))
    args = parser.parse_args(argv)

    result = {
        "profile": args.profile,
        "threads": args.threads,
        "seeds": list(experiments.get_profile(args.profile).seeds),
        "lambda": {},
        "rows": [],
        "load_before": load_average(),
    }
    for threads in args.threads:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="agkit-ranges-") as scratch:
            lam, rows = measure(args.profile, threads, Path(scratch) / "runs")
        result["lambda"][str(threads)] = lam
        result["rows"] += rows
        print(
            f"{threads} thread(s): lambda {lam:g}, {len(rows)} runs in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    result["load_after"] = load_average()
    # one entry per profile: measuring another profile keeps the ones already in the file
    stored = json.loads(args.out.read_text()) if args.out.is_file() else {}
    stored[args.profile] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(sorted(stored.items())), indent=1) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
