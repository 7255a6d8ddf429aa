"""Shared helpers of the tests: faults injected on purpose, and what a browser test needs."""

import errno
import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def index_write_fails(monkeypatch, no_hard_links: bool = False) -> None:
    """Make every write of a MaskStore's index.json fail as a full disk does; the mask PNGs
    still write. ``no_hard_links``: the file system has no hard links either (a FUSE mount
    such as Google Drive), so the store must keep the old bytes in memory."""
    from agkit.data import mask_store_index

    real = mask_store_index._atomic_write

    def atomic_write(path, data, durable=True):
        if Path(path).name == "index.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, durable)

    monkeypatch.setattr(mask_store_index, "_atomic_write", atomic_write)
    if no_hard_links:

        def no_link(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)


def require_browser(what: str, *modules: str) -> None:
    """Skip (fail on CI, which must run it) a browser test when Debian's Chromium, the
    playwright package or one of ``modules`` (e.g. "jupyterlab") is missing."""
    needs = [
        ("Debian Chromium at /usr/bin/chromium (apt-get install -y chromium)", CHROMIUM.exists()),
        (
            "the playwright package (pip install 'agkit[browser]')",
            importlib.util.find_spec("playwright"),
        ),
    ] + [(f"{m} (pip install 'agkit[browser]')", importlib.util.find_spec(m)) for m in modules]
    missing = [name for name, ok in needs if not ok]
    if missing:
        reason = f"{what} needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " -- CI must run it, so it fails instead of skipping")
        pytest.skip(reason)
