"""RunConfig, everything that decides one training run and so its cache key, and the
recipes of the course's runs built from a profile (baseline, guided, few masks, propagated).

The key hashes the config's fields (all but ``time_limit``), SynthFrac's defaults, the bytes
of the mask files it trains with (``masks_from``) and the source of the modules that train
and score it (``agkit.experiments.fingerprints``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agkit.data import synthetic
from agkit.experiments.few_masks import ANNOTATED_SHARE, FEW_MASK_LAM
from agkit.experiments.fingerprints import source_fingerprint, store_fingerprint
from agkit.propagation import PROPAGATORS, check_min_confidence

if TYPE_CHECKING:  # a profile only sets a config's fields: its module is not in the key
    from agkit.experiments.profiles import Profile

CACHE_VERSION = 2  # bump when the layout of a stored run changes


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides the outcome of one training run (and so its cache key).

    ``time_limit`` is the one field that is not part of the key: it does not change a
    run's result, it only stops (with ``TimeLimitReached``) a run that takes too long.
    """

    lam: float = 0.0
    pooling: str = "avg"
    resolution: str = "feature"
    n_train: int = 600
    n_val: int = 300
    n_test: int = 600
    annotated_fraction: float = 1.0
    mask_quality: str = "exact"
    seed: int = 0
    data_seed: int | None = None  # training/validation data drawn with this seed (None: seed)
    size: int = 64
    backbone: str = "tiny"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    lr_decay_at: float | None = None  # divide lr by 10 after this share of the epochs
    time_limit: float | None = None  # seconds; None: no limit. Not part of the key
    data: tuple = ()  # sorted (name, value) pairs passed to make_synthfrac
    masks_from: str | None = None  # a MaskStore folder with drawn masks; None = built-in
    masks_version: str = ""  # kept for old notebooks; the key hashes the mask files anyway
    # Few masks (agkit.experiments.few_masks): the image ids that keep their masks (empty:
    # every image),
    # and the share of the draws that go to annotated images (None: plain shuffling).
    annotated_ids: tuple = ()
    annotated_share: float | None = None
    # Mask propagation (agkit.propagation): a propagator draws masks for the images without
    # one from those that have one; proposals below min_confidence are left out.
    propagation: str | None = None
    min_confidence: float = 0.0

    def __post_init__(self):
        # the key must not depend on the order the ids were listed in, nor on list vs tuple
        object.__setattr__(
            self, "annotated_ids", tuple(sorted({str(i) for i in self.annotated_ids}))
        )
        if self.propagation is not None and self.propagation not in PROPAGATORS:
            raise ValueError(
                f"unknown propagation {self.propagation!r}; choose one of "
                f"{', '.join(PROPAGATORS)} (or None)."
            )
        check_min_confidence(self.min_confidence)
        few = bool(self.annotated_ids) or self.masks_from is not None
        # an empty annotated_ids without masks_from means every built-in mask: nothing is few
        if self.propagation is not None and not few:
            raise ValueError(
                "propagation spreads a few masks to the other images: give annotated_ids (the "
                "images that keep theirs) or masks_from (a MaskStore); with neither, every "
                "image keeps its built-in mask and nothing is left to propagate."
            )
        if self.annotated_share is not None and not few:
            raise ValueError(
                "annotated_share oversamples a few annotated images: give annotated_ids or "
                "masks_from; with neither, every image is annotated (annotated_share=None)."
            )
        if self.annotated_share is not None and not 0 < self.annotated_share < 1:
            raise ValueError(
                f"annotated_share must lie strictly between 0 and 1 (or be None), "
                f"got {self.annotated_share}."
            )

    @property
    def guided(self) -> bool:
        return self.lam > 0

    @property
    def label(self) -> str:
        if not self.guided:
            return "baseline"
        masks = f", {len(self.annotated_ids)} masks" if self.annotated_ids else ""
        spread = f", propagated by {self.propagation}" if self.propagation else ""
        return f"guided (lambda={self.lam:g}{masks}{spread})"

    def fields(self) -> dict:
        """The fields that decide the result (all but time_limit), as a plain dict."""
        fields = dataclasses.asdict(self)
        del fields["time_limit"]
        return fields

    def fingerprints(self) -> dict:
        """Hashes of what the config names but does not hold: source code and mask files."""
        return {
            "source_hash": source_fingerprint(),
            "masks_hash": store_fingerprint(self.masks_from) if self.masks_from else "",
        }

    def key(self) -> str:
        # SynthFrac's defaults are part of the key: a new generator default means new data.
        text = json.dumps(
            [CACHE_VERSION, self.fields(), synthetic.DEFAULTS, self.fingerprints()],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def baseline_config(profile: Profile, seed: int = 0, **changes) -> RunConfig:
    """The baseline of a profile: average pooling, no attention loss."""
    return _config(profile, seed, **{"lam": 0.0, "pooling": "avg", **changes})


def guided_config(profile: Profile, lam: float, seed: int = 0, **changes) -> RunConfig:
    """Guided training of a profile: softmax pooling plus lam * attention loss."""
    return _config(profile, seed, **{"lam": lam, "pooling": "softmax", **changes})


FEW_MASKS = 20  # the masks a student draws in notebook 02 (its n_to_annotate)


def few_mask_config(
    profile: Profile,
    lam: float = FEW_MASK_LAM,
    seed: int = 0,
    annotated_ids=(),
    share: float | None = ANNOTATED_SHARE,
    **changes,
) -> RunConfig:
    """Guided training with a few masks: only ``annotated_ids`` keep their masks (empty:
    every image that has one, e.g. with ``masks_from``), and annotated images make up
    ``share`` of the draws (None: plain shuffling). See agkit.experiments.few_masks."""
    return guided_config(
        profile, lam, seed, annotated_ids=tuple(annotated_ids), annotated_share=share, **changes
    )


def masks_config(
    profile: Profile, seed: int, lam: float | None, propagation: str | None, **masks
) -> RunConfig:
    """A run on a few masks (``masks``: annotated_ids, or masks_from and data_seed): alone,
    the annotated images oversampled (``few_mask_config``, lam default FEW_MASK_LAM), or
    spread by ``propagation`` to every training image (``propagated_config``, lam default
    PROPAGATED_LAM)."""
    if propagation is None:
        return few_mask_config(profile, FEW_MASK_LAM if lam is None else lam, seed, **masks)
    weight = PROPAGATED_LAM if lam is None else lam
    return propagated_config(profile, seed, propagation=propagation, lam=weight, **masks)


# The propagated recipe: every image with a mask (drawn or proposed), trained like full
# annotation (its lambda, 3, and plain shuffling), every proposal kept. The propagator was
# chosen on the validation splits with benchmarks/few_masks.py (workshop profile, 10 and 20
# masks, seeds 0-2); the weight and the confidence gate were not tuned: see docs/results.md.
PROPAGATION = "segmenter"
PROPAGATED_LAM = 3.0
MIN_CONFIDENCE = 0.0


def propagated_config(
    profile: Profile,
    seed: int = 0,
    annotated_ids=(),
    propagation: str = PROPAGATION,
    lam: float = PROPAGATED_LAM,
    min_confidence: float = MIN_CONFIDENCE,
    **changes,
) -> RunConfig:
    """Guided training on a few masks spread to every training image: ``annotated_ids``
    (or the images of ``masks_from``) keep the masks drawn for them, ``propagation``
    proposes the others (agkit.propagation), and every image trains with its mask."""
    return guided_config(
        profile,
        lam,
        seed,
        annotated_ids=tuple(annotated_ids),
        propagation=propagation,
        min_confidence=min_confidence,
        **changes,
    )


def _config(profile: Profile, seed: int, **changes) -> RunConfig:
    base: dict[str, Any] = {
        "n_train": profile.n_train,
        "n_val": profile.n_val,
        "n_test": profile.n_test,
        "seed": seed,
        "size": profile.size,
        "backbone": profile.backbone,
        "epochs": profile.epochs,
        "batch_size": profile.batch_size,
        "lr": profile.lr,
        "lr_decay_at": profile.lr_decay_at,
        "time_limit": profile.time_limit,
        "data": tuple(sorted(profile.data.items())),
    }
    base.update(changes)
    return RunConfig(**base)
