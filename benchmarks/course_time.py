"""How long each notebook's training takes, relative to a plain PyTorch loop.

    python benchmarks/course_time.py [--profile workshop] [--max-runs N] [--notebooks 01 03]
    python benchmarks/course_time.py --epochs 24 --no-decay --eval-batch 256   # the old setting

Trains, in this one process and in notebook order, the runs each notebook of a profile
trains with the built-in masks (``experiments.course_configs``: notebook 01's baseline, notebook
03's lambda candidates and baseline-vs-guided comparison, notebook 04's ablations), each run
once, into a scratch runs folder. Right after each run it times a plain PyTorch loop over
the same batches: the same CAMNet, AdamW, cross-entropy plus the attention loss for guided
runs, the same loader, the same number of epochs, and nothing else. Per notebook it prints

* runs, image-epochs: how much training the notebook asks for (exact, machine-free);
* seconds: the course's time (data, training, scoring, storing), summed over its runs;
* x plain: seconds / the plain loop's seconds over the same batches (the course's overhead);
* plain epochs: seconds / one plain epoch over the profile's training set, measured at the
  start: the notebook's size in a unit that a busy or a fast machine changes alike.

``--max-runs N`` times only the N largest new runs of each notebook and scales the rest by
image-epochs (marked "~"), for a quick reading on a busy machine. Times are for one
process with one thread; ``make course`` trains two runs at a time on two cores.

Log (workshop profile). The machine was shared while these were measured (load average
13-18 on 2 cores, from `uptime`; one plain epoch took 25-45 s instead of about 1.7 s idle),
so only ratios measured within one process and the exact image-epoch counts are given:

* before: 24 epochs at a constant lr, scoring in batches of 256. Image-epochs: 01 12,000;
  03 84,000 (7 new runs); 04 216,000 (39 new runs); 312,000 in all. `make course` took
  17.5 min idle, notebook 04 674 s (issue 13's measurements).
* 8 epochs, lr / 10 for the last quarter (``lr_decay_at=0.75``): 104,000 image-epochs in
  all (a third). Baseline vs guided on the shifted test split over seeds 0-2, lambda 3
  chosen on validation: 56.1 % vs 92.7 %, a gap of 36.7 points (24 epochs: 58.1 % vs
  96.1 %, 38.0 points).
* scoring in batches of 64 instead of 256: scoring 600 images takes half as long (11.9 s vs
  23.6 s, alternated 3 times in one process, load 18).
* one torch thread per run (results no longer depend on the process's thread count), test
  splits drawn once per process, runs longest first, worker processes kept between
  run_many calls (no new processes for each figure of notebook 04).
* where a run's time goes now (cProfile, 2-epoch run of 500 images, load 14): training
  steps 54 %, scoring 1,500 images 33 %, BatchNorm recalibration 9 %, data 4 %; at 8
  epochs scoring is about 13 % of a 500-image run and 22 % of a 250-image ablation run.
* notebook 01 as printed by this script (``--notebooks 01``, run at the same time as the
  old setting, load 13-18): now 9.8 plain epochs (2.11 x the plain loop over the same
  batches); with ``--epochs 24 --no-decay --eval-batch 256`` 21.3 plain epochs (1.52 x).
  The overhead ratios are noisy (course and plain loop timed minutes apart while the load
  moved); cProfile above puts the overhead near 1.2 x for an 8-epoch run.
* ``PROFILE=ci`` course, load 15-20: 176 / 36 / 206 / 343 / 95 s for notebooks 01-05
  with the old process pool per run_many call, 59 / 28 / 110 / 112 / 104 s with worker
  processes kept between calls (04 calls run_many once per figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from agkit import experiments
from agkit.data import make_loader
from agkit.method.loss import attention_guidance_loss


def plain_loop(config: experiments.RunConfig) -> float:
    """Seconds of a bare training loop over the batches ``experiments.run(config)`` trains on."""
    datasets = experiments.make_datasets(config)
    loader = make_loader(datasets["train"], config.batch_size, shuffle=True, seed=config.seed)
    model = experiments.build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    started = time.perf_counter()
    for _ in range(config.epochs):
        for images, labels, masks, _has_mask in loader:
            out = model(images)
            loss = F.cross_entropy(out.logits, labels)
            if config.guided:
                loss = loss + config.lam * attention_guidance_loss(
                    out.cams, masks, resolution=config.resolution
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started


def image_epochs(config: experiments.RunConfig) -> int:
    return config.n_train * config.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="workshop")
    parser.add_argument(
        "--max-runs",
        type=int,
        default=None,
        help="time only the N largest new runs of each notebook",
    )
    parser.add_argument(
        "--notebooks",
        nargs="*",
        default=None,
        help="time only these notebooks, e.g. 01 03 (earlier ones are skipped)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    parser.add_argument("--no-decay", action="store_true", help="constant learning rate")
    parser.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help=f"scoring batch size (default {experiments.EVAL_BATCH_SIZE})",
    )
    parser.add_argument(
        "--lam",
        type=float,
        default=3.0,
        help="the lambda notebook 04 uses (the one validation chose)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = experiments.get_profile(args.profile)
    changes = {}
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.no_decay:
        changes["lr_decay_at"] = None
    profile = dataclasses.replace(profile, **changes)
    if args.eval_batch:
        experiments.EVAL_BATCH_SIZE = args.eval_batch

    # The unit: one plain epoch over the profile's training set, baseline, median of 3.
    unit_config = dataclasses.replace(experiments.baseline_config(profile, 0), epochs=1)
    plain_loop(unit_config)  # warm-up
    unit = statistics.median(plain_loop(unit_config) for _ in range(3))
    print(
        f"profile {profile.name}: {profile.epochs} epochs, lr_decay_at={profile.lr_decay_at}, "
        f"scoring batch {experiments.EVAL_BATCH_SIZE}, {args.threads} thread(s); one plain epoch "
        f"({profile.n_train} images) = {unit:.2f} s"
    )
    print(
        f"{'notebook':>8} {'runs':>5} {'image-epochs':>13} {'seconds':>9} {'x plain':>8} "
        f"{'plain epochs':>13}"
    )

    done: set[str] = set()
    total = {"seconds": 0.0, "image_epochs": 0, "runs": 0}
    with tempfile.TemporaryDirectory() as runs_dir:
        for notebook, configs in experiments.course_configs(profile, args.lam).items():
            new = {c.key(): c for c in configs if c.key() not in done}
            done.update(new)
            if args.notebooks and notebook not in args.notebooks:
                continue
            ordered = sorted(new.values(), key=image_epochs, reverse=True)
            timed = ordered if args.max_runs is None else ordered[: args.max_runs]
            seconds = plain = 0.0
            for config in timed:
                started = time.perf_counter()
                experiments.run(config, runs_dir, progress=False, device="cpu")
                seconds += time.perf_counter() - started
                plain += plain_loop(config)
            work = sum(map(image_epochs, ordered))
            scale = work / max(1, sum(map(image_epochs, timed)))
            seconds *= scale
            mark = "~" if len(timed) < len(ordered) else " "
            print(
                f"{notebook:>8} {len(ordered):>5} {work:>13,} {mark}{seconds:>8.0f} "
                f"{seconds / (plain * scale):>8.2f} {mark}{seconds / unit:>12.1f}",
                flush=True,
            )
            total["seconds"] += seconds
            total["image_epochs"] += work
            total["runs"] += len(ordered)
    print(
        f"{'all':>8} {total['runs']:>5} {total['image_epochs']:>13,} "
        f"{total['seconds']:>9.0f} {'':>8} {total['seconds'] / unit:>13.1f}"
    )


if __name__ == "__main__":
    main()
