"""Run the whole course: execute every notebook, then print and save the results.

    python -m agkit.course.run_all [--profile workshop] [--out build/course] [--runs runs]
    python -m agkit.course.run_all --profile workshop --pack build/agkit-runs-workshop.tar.gz

The notebooks in ``notebooks/`` run in order with papermill (annotation by the simulated
annotator), each into ``<out>/<name>.ipynb``; beside the background trainer
(``agkit.course.train_ahead``) notebook 5 runs before notebook 4, which it does not need.
Because every training run is cached in the runs folder, the closing table costs nothing: it
reads the runs notebook 3 made. The script prints baseline vs guided (mean over seeds), saves
``<out>/summary.png`` and writes ``<out>/results.json``.

With ``--pack ARCHIVE`` no notebook runs: the script trains whatever run of the profile is
not stored yet and packs them all into ARCHIVE (``make cache``), for students to unpack with
``agkit.experiments.use_cache`` and start from trained models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A course notebook raised an error; the message names the notebook and the cell."""


def execute(notebook: Path, out: Path, parameters: dict, timeout: int | None = None) -> Path:
    """Execute one notebook with papermill into ``out``; raise NotebookFailed on error."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = out / notebook.name
    # The kernel draws figures into the notebook as Jupyter does, whatever backend the
    # calling process chose for itself (the test suite's Agg would leave no figure).
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        papermill.execute_notebook(
            str(notebook),
            str(target),
            parameters=parameters,
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout,
        )
    except PapermillExecutionError as error:
        raise NotebookFailed(
            f"{notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook} failed "
            f"in cell {error.exec_count} ({error.ename}: {error.evalue}); the executed copy with "
            f"the traceback is {target}"
        ) from None
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    return target


def course_parameters(profile: str, runs: Path, notebook: Path, device=None) -> dict:
    parameters = {"profile": profile, "runs_dir": str(runs)}
    if device is not None:
        parameters["device"] = device
    if notebook.name.startswith("02_"):
        parameters["annotator"] = "simulated"
    return parameters


def summarize_runs(profile_name: str, runs: Path, out: Path) -> dict:
    """Print the baseline-vs-guided table, save summary.png and results.json; return the results."""
    import matplotlib

    matplotlib.use("Agg")
    from agkit import experiments
    from agkit.course import plots
    from agkit.method import metrics

    profile = experiments.get_profile(profile_name)
    table = experiments.main_comparison(profile, runs, progress=False)
    summary = experiments.summarize(table)
    lam = float(table.loc[table["method"] == "guided", "lam"].iloc[0])

    splits = experiments.make_splits(experiments.baseline_config(profile, profile.seeds[0]))
    test = splits["test_shifted"]
    picked = [i for i in range(len(test)) if test.labels[i] == 0 and test.meta["marker"][i]][:3] + [
        i for i in range(len(test)) if test.labels[i] == 1 and not test.meta["marker"][i]
    ][:3]
    examples = {"images": test.images[picked], "masks": test.masks[picked]}
    for name, config in (
        ("baseline", experiments.baseline_config(profile, profile.seeds[0])),
        ("guided", experiments.guided_config(profile, lam, profile.seeds[0])),
    ):
        examples[name] = plots.predicted_cams(
            experiments.load_model(config, runs), test.images[picked]
        )[0]
    chance = metrics.chance_levels(test.masks, examples["baseline"].shape[-2:])
    figure = plots.summary_figure(table, examples, chance=plots.chance_lines(chance))
    figure.savefig(out / "summary.png", dpi=120, bbox_inches="tight")

    results: dict[str, Any] = {
        method: {metric: float(summary.loc[method, metric]) for metric in summary.columns}
        for method in ("baseline", "guided")
    }
    results["profile"] = profile_name
    results["lambda"] = lam
    results["seeds"] = list(profile.seeds)
    results["chance_shifted"] = chance
    (out / "results.json").write_text(json.dumps(results, indent=2))

    print(
        f"\nAttention guidance on SynthFrac ({profile_name} profile, "
        f"mean of {len(profile.seeds)} seeds, lambda={lam:g} chosen on validation)"
    )
    with_pointing = experiments.summarize(
        table, metrics=("accuracy_shifted", "mass_in_mask", "pointing_game_shifted")
    )
    print("\n".join(metrics.chance_headline(with_pointing, chance)))
    print(
        (100 * summary)
        .round(1)
        .rename(
            columns={
                "accuracy_shifted": "accuracy shifted %",
                "accuracy_id": "accuracy in-dist %",
                "auc_shifted": "AUC shifted %",
                "mass_in_mask": "mass in mask %",
            }
        )
        .to_string()
    )
    gain = 100 * (
        summary.loc["guided", "accuracy_shifted"] - summary.loc["baseline", "accuracy_shifted"]
    )
    print(f"guided - baseline on the shifted test split: {gain:+.1f} points")
    print(f"saved {out / 'summary.png'} and {out / 'results.json'}")
    return results


def pack_profile(
    profile_name: str, runs: Path, archive: Path, device=None, jobs: int | None = None
) -> Path:
    """Train every built-in-mask run of the profile's notebooks (those not stored), pack them."""
    from agkit import experiments

    profile = experiments.get_profile(profile_name)
    lam, _ = experiments.choose_lambda(profile, runs, device=device, jobs=jobs)
    configs = [c for group in experiments.course_configs(profile, lam).values() for c in group]
    experiments.run_many(configs, runs, desc=f"{profile_name} runs", device=device, jobs=jobs)
    archive = experiments.pack_runs(configs, runs, archive, profile=profile_name)
    count = len({c.key() for c in configs})
    print(f"packed {count} runs ({archive.stat().st_size / 1e6:.1f} MB) into {archive}")
    return archive


# The course proper: what `make course` runs and times. Later notebooks are extensions
# (06: other guidance terms, about half an hour on the workshop profile), run with --all.
COURSE_PREFIXES = ("01", "02", "03", "04", "05")


def course_notebooks(extensions: bool = False, folder: Path = NOTEBOOKS) -> list[Path]:
    """The course notebooks in ``folder``, in order; with ``extensions`` also the ones after
    the course."""
    notebooks = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if extensions:
        return notebooks
    return [n for n in notebooks if n.name[:2] in COURSE_PREFIXES]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="workshop", choices=["ci", "workshop", "full"])
    parser.add_argument("--out", default=str(ROOT / "build" / "course"))
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--only", nargs="*", help="notebook name prefixes to run, e.g. 01 03")
    parser.add_argument(
        "--all", action="store_true", help="also run the extension notebooks (06 onwards)"
    )
    parser.add_argument(
        "--pack",
        metavar="ARCHIVE",
        help="run no notebook: train the profile's runs and pack them into ARCHIVE",
    )
    parser.add_argument("--device", default=None, help="where to train (default: GPU if any)")
    parser.add_argument(
        "--no-ahead",
        dest="ahead",
        action="store_false",
        help="do not train later notebooks' runs in the background (agkit.course.train_ahead)",
    )
    args = parser.parse_args(argv)

    out, runs = Path(args.out).resolve(), Path(args.runs).resolve()
    if args.pack:
        pack_profile(args.profile, runs, Path(args.pack), device=args.device)
        return 0
    notebooks = course_notebooks(extensions=args.all or bool(args.only))
    if args.only:
        # a prefix that names no notebook would run none and then train the summary's runs
        unknown = [p for p in args.only if not any(n.name.startswith(p) for n in notebooks)]
        if unknown:
            parser.error(
                f"--only {' '.join(unknown)} names no notebook; give the number prefixes of "
                f"{', '.join(n.stem for n in notebooks)} (e.g. --only 01 03)."
            )
        notebooks = [n for n in notebooks if any(n.name.startswith(p) for p in args.only)]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(
            f"--out {out} cannot be created ({error.strerror}); pass a folder you can write to."
        )
    from agkit.course import train_ahead

    ahead = None
    if args.ahead and not args.only and train_ahead.supported(args.device):
        ahead = train_ahead.start(args.profile, runs, out / "train_ahead.log", args.device)
        notebooks = train_ahead.notebook_order(notebooks)
    failures = []
    try:
        for notebook in notebooks:
            started = time.perf_counter()
            print(f"running {notebook.name} ({args.profile}) ...", flush=True)
            try:
                execute(notebook, out, course_parameters(args.profile, runs, notebook, args.device))
                print(
                    f"  done in {time.perf_counter() - started:.0f} s -> {out / notebook.name}",
                    flush=True,
                )
            except NotebookFailed as error:
                print(f"  FAILED: {error}", flush=True)
                failures.append(str(error))
    finally:
        if ahead is not None:
            train_ahead.stop(ahead)
            print(train_ahead.report(ahead, out / "train_ahead.log"), flush=True)
    if failures:
        print("\nThe course did not finish:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    summarize_runs(args.profile, runs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
