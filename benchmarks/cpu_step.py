"""What a CPU training step costs under three settings, as ratios measured in one run.

* ``default``: glibc's own allocator thresholds, float32, the usual (NCHW) memory layout;
* ``kept``: ``agkit.engine.memory.keep_freed_memory``, which ``fit`` calls on a CPU, so
  the course trains like this;
* ``kept+channels_last``: also ``Precision(channels_last=True)``, an option of
  ``agkit train`` (``channels_last = true`` in a config), not of the course.

Every measurement is a fresh process (an allocator setting holds for a whole process) that
starts a course run, one torch thread: the workshop profile's guided run (tiny ResNet, 500
images of 64 px, batches of 32, the paper's loss at lambda 3), its data, batches and
``fit`` recipe, for ``--epochs`` epochs; the time is ``fit``'s own, per step. The settings
take turns, ``--rounds`` times; each round divides each setting's time per step by the
default's in that round, and the table gives the median of those ratios
(``agkit.engine.timing.StepTimes``), so a machine that slows down for a while hits every
setting alike. The last column says whether the weights
after the steps equal the default's bit for bit: the allocator changes where memory comes
from, the layout changes the order of the float sums in every convolution, so its numbers
differ in the last digits (and, through training, in the scores). That is why the course
does not switch to channels-last without measuring its results again.

    python benchmarks/cpu_step.py [--epochs 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys

from arguments import at_least  # benchmarks/arguments.py

from agkit.engine.timing import StepTimes

SETTINGS = ("default", "kept", "kept+channels_last")


def measure(setting: str, epochs: int) -> dict:
    """In this process: the start of a course run under ``setting`` (its data, its batches,
    ``fit`` with its recipe for ``epochs`` epochs); the seconds per training step and a hash
    of the weights after them."""
    from agkit import experiments
    from agkit.engine.device import set_threads
    from agkit.engine.precision import Precision
    from agkit.experiments.models import build_model
    from agkit.method import train

    if setting == "default":
        train.keep_freed_memory = lambda: False  # fit calls it on a CPU; here it may not
    set_threads(1)
    profile = experiments.get_profile("workshop")
    config = experiments.guided_config(profile, 3.0, 0)
    loader = experiments.training_loader(config, experiments.make_datasets(config)["train"])
    precision = Precision(channels_last=setting.endswith("channels_last"))
    model = precision.model(build_model(config))
    settings = dict(experiments.fit_settings(config), epochs=epochs)
    history = train.fit(model, loader, precision=precision, callbacks=[], **settings)
    digest = hashlib.sha1()
    for tensor in model.state_dict().values():
        digest.update(tensor.contiguous().numpy().tobytes())
    steps = epochs * len(loader)
    return {"seconds": float(history["seconds"].sum()) / steps, "weights": digest.hexdigest()}


def in_fresh_process(setting: str, epochs: int) -> dict:
    command = [sys.executable, __file__, "--child", setting, "--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=at_least(1), default=2, help="epochs of the run per process"
    )
    parser.add_argument("--rounds", type=at_least(1), default=3, help="turns of every setting")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.epochs)))
        return 0
    seconds: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    weights: dict[str, set[str]] = {setting: set() for setting in SETTINGS}
    for round_ in range(args.rounds):
        for setting in SETTINGS:
            found = in_fresh_process(setting, args.epochs)
            seconds[setting].append(found["seconds"])
            weights[setting].add(found["weights"])
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    times = StepTimes(seconds, reference="default")  # the kit's one step-time measure
    ratios, reference = times.ratios(), weights["default"]
    print(f"default: {1000 * times.medians()['default']:.0f} ms per step (median over rounds)")
    print("| setting | step time / default | same weights as default |")
    print("|---|---:|---|")
    for setting in SETTINGS:
        same = "yes" if weights[setting] == reference and len(reference) == 1 else "no"
        print(f"| {setting} | {ratios[setting]:.2f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
