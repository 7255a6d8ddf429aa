"""Course plumbing: profiles, cached experiment runs on SynthFrac, and the runs/ folder.

Every training run in the notebooks is described by a ``RunConfig``. ``run(config)``
trains it once and stores the model, its training history and its scores under
``runs/experiments/<key>/``; asking again returns the stored result at once. That is how
a notebook can be rerun quickly, how each notebook can stand alone (it makes whatever an
earlier notebook would have made), and how ``make course`` collects the results.

A stored result is reused only when everything that decides it is unchanged: the
``RunConfig``, the bytes of the mask files it trains with (``masks_from``) and the code
of the agkit modules that train and score it (``source_files()``: ``store.py`` and what it
imports; docstrings and comments left out). Edit ``agkit/method/loss.py`` or redraw a mask
and the affected runs train again. Runs are sized by epochs, never by time: a run that hits
its ``time_limit`` raises ``TimeLimitReached`` and is not stored.

The package, one concept a module (every public name is importable from here):

``profiles``     ``Profile``, ``PROFILES`` (ci, workshop, full), ``get_profile``
``configs``      ``RunConfig`` and its key; the recipes ``baseline_config``,
                 ``guided_config``, ``few_mask_config``, ``propagated_config``, ``masks_config``
``errors``       ``TimeLimitReached``, ``NoMasksError``, ``SourceChangedError``,
                 ``DamagedRunError``
``fingerprints`` what a key hashes besides the config: ``source_files``,
                 ``source_fingerprint``, ``store_fingerprint``; ``check_source_loaded``
``mask_checks``  drawn masks: ``annotation_folder``, ``check_mask_store``, ``mask_changes``
``models``       ``build_model`` (a run's seeded network), ``cam_grid``
``splits``       a run's data: ``make_splits``, ``make_datasets``, ``training_masks``,
                 ``propagated_masks``, ``image_positions``, ``training_loader``
``store``        one run trained, scored and stored: ``run``, ``is_stored``, ``load_model``,
                 ``load_history``, ``load_propagated``, ``fit_settings``
``parallel``     ``run_many`` in worker processes, ``start_runs`` (queued there, not waited
                 for), ``default_jobs``, ``shutdown_workers``
``proposals``    runs on chosen masks: ``your_masks_config``, ``annotation_proposal``,
                 ``random_control_config``
``comparisons``  ``choose_lambda``, ``main_comparison``, ``summarize``, and the runs each
                 notebook trains: ``ablation_configs``, ``course_configs``
``archives``     ``pack_runs`` and ``use_cache``: trained runs moved between machines
``few_masks``    guided training when only a few images have masks
``recipes``      whole experiments with a publication's settings (CUB)
``zoo``          every guidance term trained and scored alike (notebook 06)

``pack_runs`` and ``use_cache`` move trained runs between machines: an instructor packs a
profile's runs into one archive, students unpack it and redraw every figure in seconds.
"""

from agkit.experiments.archives import MANIFEST, MAX_RUN_FILE_BYTES, RUN_FILES, pack_runs, use_cache
from agkit.experiments.comparisons import (
    SUMMARY_METRICS,
    ablation_configs,
    choose_lambda,
    course_configs,
    main_comparison,
    summarize,
)
from agkit.experiments.configs import (
    CACHE_VERSION,
    FEW_MASKS,
    MIN_CONFIDENCE,
    PROPAGATED_LAM,
    PROPAGATION,
    RunConfig,
    baseline_config,
    few_mask_config,
    guided_config,
    masks_config,
    propagated_config,
)
from agkit.experiments.errors import (
    DamagedRunError,
    NoMasksError,
    SourceChangedError,
    TimeLimitReached,
)
from agkit.experiments.few_masks import ANNOTATED_SHARE, FEW_MASK_LAM
from agkit.experiments.fingerprints import (
    PACKAGE_ROOT,
    TRAINING_ROOTS,
    check_source_loaded,
    source_files,
    source_fingerprint,
    store_fingerprint,
)
from agkit.experiments.mask_checks import annotation_folder, check_mask_store, mask_changes
from agkit.experiments.models import build_model, cam_grid
from agkit.experiments.parallel import default_jobs, run_many, shutdown_workers, start_runs
from agkit.experiments.profiles import PROFILES, Profile, get_profile
from agkit.experiments.proposals import (
    annotation_proposal,
    random_control_config,
    your_masks_config,
)
from agkit.experiments.splits import (
    TEST_SEED,
    image_positions,
    make_datasets,
    make_splits,
    propagated_masks,
    propagation_scores,
    training_loader,
    training_masks,
)
from agkit.experiments.store import (
    EVAL_BATCH_SIZE,
    SCORES,
    SPLIT_TAGS,
    fit_settings,
    is_stored,
    load_history,
    load_model,
    load_propagated,
    run,
    run_folder,
)

__all__ = [
    "ANNOTATED_SHARE",
    "CACHE_VERSION",
    "EVAL_BATCH_SIZE",
    "FEW_MASKS",
    "FEW_MASK_LAM",
    "MANIFEST",
    "MAX_RUN_FILE_BYTES",
    "MIN_CONFIDENCE",
    "PACKAGE_ROOT",
    "PROFILES",
    "PROPAGATED_LAM",
    "PROPAGATION",
    "RUN_FILES",
    "SCORES",
    "SPLIT_TAGS",
    "SUMMARY_METRICS",
    "TEST_SEED",
    "TRAINING_ROOTS",
    "DamagedRunError",
    "NoMasksError",
    "Profile",
    "RunConfig",
    "SourceChangedError",
    "TimeLimitReached",
    "ablation_configs",
    "annotation_folder",
    "annotation_proposal",
    "baseline_config",
    "build_model",
    "cam_grid",
    "check_mask_store",
    "check_source_loaded",
    "choose_lambda",
    "course_configs",
    "default_jobs",
    "few_mask_config",
    "fit_settings",
    "get_profile",
    "guided_config",
    "image_positions",
    "is_stored",
    "load_history",
    "load_model",
    "load_propagated",
    "main_comparison",
    "make_datasets",
    "make_splits",
    "mask_changes",
    "masks_config",
    "pack_runs",
    "propagated_config",
    "propagated_masks",
    "propagation_scores",
    "random_control_config",
    "run",
    "run_folder",
    "run_many",
    "shutdown_workers",
    "source_files",
    "source_fingerprint",
    "start_runs",
    "store_fingerprint",
    "summarize",
    "training_loader",
    "training_masks",
    "use_cache",
    "your_masks_config",
]
