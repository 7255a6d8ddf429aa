"""agkit.experiments.fingerprints: a stored run is reused only when its config, its masks and
the code that trains and scores it are the same; docstrings and comments are not code, and
importing agkit.experiments reads no source."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import TINY, FitCalls, copy_of_package, drawn_store, imported_from

from agkit import experiments
from agkit.data import MaskStore
from agkit.experiments import fingerprints, store

# ---- issue 9 item 8: a stored run is reused only when config, masks and source are the same


def test_edited_source_forces_retrain(tmp_path, monkeypatch):
    package = copy_of_package(tmp_path)
    imported_from(package, monkeypatch)
    config = experiments.guided_config(TINY, 1.0)
    experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    fit = FitCalls()
    monkeypatch.setattr(store, "fit", fit)
    experiments.run(config, tmp_path / "runs", progress=False)
    assert fit.calls == []  # nothing changed: reused

    losses = package / "method/loss.py"
    losses.write_text(losses.read_text() + "\nSTUDENT_EDIT = 1\n")
    with pytest.raises(experiments.SourceChangedError, match="Restart the kernel"):
        experiments.run(config, tmp_path / "runs", progress=False, device="cpu")  # runs old code
    assert fit.calls == []
    imported_from(package, monkeypatch)  # a restarted kernel imports the edit
    edited = experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert len(fit.calls) == 1  # the edit retrains
    assert edited["source_hash"] == experiments.source_fingerprint(package)
    assert len([p for p in (tmp_path / "runs" / "experiments").iterdir() if p.is_dir()]) == 2


def test_a_source_file_modified_after_the_import_stops_training(tmp_path, monkeypatch):
    # the import reads no source, so the first check cannot know the imported text: a file
    # modified after the import may hold code this process does not run
    package = copy_of_package(tmp_path)
    imported_from(package, monkeypatch)
    fingerprints.check_source_loaded()  # the copy keeps the timestamps: nothing changed
    fingerprints._loaded_source.clear()
    later = fingerprints.IMPORTED_AT + 10
    os.utime(package / "data/io.py", (later, later))  # same bytes, modified after the import
    with pytest.raises(experiments.SourceChangedError, match="Restart the kernel"):
        fingerprints.check_source_loaded()
    monkeypatch.setattr(fingerprints, "IMPORTED_AT", later + 1)  # imported after that
    fingerprints.check_source_loaded()


def test_source_fingerprint_reads_content_not_timestamps(tmp_path):
    package = copy_of_package(tmp_path)
    before = experiments.source_fingerprint(package)
    metrics = package / "method/metrics.py"
    text = metrics.read_text()
    metrics.write_text(text)  # same bytes, new timestamp
    assert experiments.source_fingerprint(package) == before
    metrics.write_bytes(text.replace("\n", "\r\n").encode())  # a Windows checkout
    assert experiments.source_fingerprint(package) == before
    metrics.write_text(text.replace("def ", "def  ", 1))  # layout, not code
    assert experiments.source_fingerprint(package) == before
    metrics.write_text(text + "\nEDITED = 1\n")
    assert experiments.source_fingerprint(package) != before


def rewrite_docstrings(path: Path) -> int:
    """Rewrite every docstring of the Python file ``path`` (one line each, with a comment
    after it) and add a comment line at its top; returns how many docstrings there were."""
    lines = path.read_text().splitlines(keepends=True)
    docstrings = [
        node.body[0]
        for node in ast.walk(ast.parse("".join(lines)))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
        and not lines[node.body[0].lineno - 1][: node.body[0].col_offset].strip()
    ]
    for doc in sorted(docstrings, key=lambda doc: -doc.lineno):
        indent = " " * doc.col_offset
        lines[doc.lineno - 1 : doc.end_lineno] = [f'{indent}"""Rewritten."""  # a comment\n']
    path.write_text("# a comment at the top\n" + "".join(lines))
    return len(docstrings)


def test_docstrings_and_comments_leave_the_fingerprint_alone(tmp_path, monkeypatch):
    package = copy_of_package(tmp_path)
    monkeypatch.setattr(fingerprints, "PACKAGE_ROOT", package)
    config = experiments.guided_config(TINY, 1.0)
    before, key = experiments.source_fingerprint(package), config.key()
    edited = ("method/loss.py", "experiments/store.py", "experiments/configs.py")
    assert set(edited) <= set(experiments.source_files(package))
    for module in edited:
        assert rewrite_docstrings(package / module) > 2
    assert experiments.source_fingerprint(package) == before and config.key() == key
    loss = package / "method/loss.py"
    loss.write_text(loss.read_text() + "\nEDITED = 1\n")  # code
    assert experiments.source_fingerprint(package) != before and config.key() != key


def test_code_is_hashed_without_its_docstrings_alike_on_every_python(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        '"""Module."""\n\n\nclass A:\n    """Class."""\n\n    def f(self, x: int = 1):\n'
        '        """Method."""\n        return x + 1  # a comment\n'
    )
    # the text of the hash, pinned: a field some Python adds (type_params, 3.12) is empty
    # and left out, so a cache packed on one Python is reused on another
    assert fingerprints._code(path).decode() == (
        "Module(body=[ClassDef(name='A', body=[FunctionDef(name='f', args=arguments(args=["
        "arg(arg='self'), arg(arg='x', annotation=Name(id='int', ctx=Load()))], "
        "defaults=[Constant(value=1)]), body=[Return(value=BinOp(left=Name(id='x', "
        "ctx=Load()), op=Add(), right=Constant(value=1)))])])])"
    )


@pytest.mark.parametrize("module", ["data/io.py", "data/mask_store.py", "data/shapes.py"])
def test_editing_a_data_module_changes_every_key(tmp_path, monkeypatch, module):
    # issue 23: io.py scales every SynthFrac image and mask_store.py reads every drawn mask,
    # yet an edit of either left the keys unchanged and a stale run was reused
    package = copy_of_package(tmp_path)
    monkeypatch.setattr(fingerprints, "PACKAGE_ROOT", package)
    config = experiments.guided_config(TINY, 1.0)
    before = config.key()
    path = package / module
    path.write_text(path.read_text() + "\nSCALE_FIX = 1  # an edit\n")
    assert config.key() != before


OFF_THE_TRAINING_PATH = (
    "experiments/archives.py",
    "experiments/comparisons.py",
    "experiments/parallel.py",
    "experiments/proposals.py",
    "experiments/profiles.py",
    "experiments/__init__.py",
)


def test_packing_comparing_and_presentation_code_are_not_hashed():
    hashed = set(experiments.source_files())
    assert "experiments/store.py" in hashed and "method/loss.py" in hashed
    assert not hashed & set(OFF_THE_TRAINING_PATH)
    assert not [name for name in hashed if name.startswith(("course/", "widgets/"))]


def test_editing_presentation_code_keeps_the_keys(tmp_path, monkeypatch):
    package = copy_of_package(tmp_path)
    monkeypatch.setattr(fingerprints, "PACKAGE_ROOT", package)
    config = experiments.guided_config(TINY, 1.0)
    before = config.key()
    edited = [*OFF_THE_TRAINING_PATH]
    edited += [p.relative_to(package).as_posix() for p in sorted(package.glob("course/**/*.py"))]
    edited += [p.relative_to(package).as_posix() for p in sorted(package.glob("widgets/*.py"))]
    assert "course/plots.py" in edited and "widgets/annotator.py" in edited
    for module in edited:
        path = package / module
        path.write_text(path.read_text() + "\nPRESENTATION_EDIT = 1  # an edit\n")
    assert config.key() == before


def test_source_files_follow_imports_of_every_kind(tmp_path):
    package = tmp_path / "agkit"
    (package / "sub").mkdir(parents=True)
    (package / "experiments").mkdir()
    (package / "experiments" / "store.py").write_text(
        "import importlib\nfrom typing import TYPE_CHECKING\nfrom agkit.sub import thing\n"
        "if TYPE_CHECKING:\n    from agkit.typed import T\nelse:\n    import agkit.other\n"
        "def later():\n    import agkit.lazy\n    importlib.import_module('agkit.dynamic')\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "thing.py").write_text("from agkit.deep import x\n")
    for name in ("lazy", "dynamic", "deep", "unused", "typed", "other"):
        (package / f"{name}.py").write_text("x = 1\n")
    assert experiments.source_files(package) == [
        "deep.py",
        "dynamic.py",
        "experiments/store.py",
        "lazy.py",
        "other.py",
        "sub/__init__.py",
        "sub/thing.py",
    ]  # typed.py: an import for type checkers runs no code


def test_every_module_a_run_imports_is_hashed(tmp_path):
    # whatever code a run executes is in its key: train a tiny run in a fresh process and
    # compare the agkit modules it loaded, and those whose functions it called, with the
    # files the fingerprint reads (importing the package loads modules a run never uses)
    script = f"""
import sys
from agkit import experiments
loaded_before = set(sys.modules)
called = set()
def trace(frame, event, arg):
    called.add(frame.f_code.co_filename)
sys.settrace(trace)
profile = experiments.Profile(name="t", size=32, backbone="tiny", n_train=16, n_val=8, n_test=8,
    epochs=1, batch_size=8, lr=3e-3, seeds=(0,), lambdas=(1.0,), time_limit=None,
    ablation_n_train=16, ablation_seeds=(0,), ablation_lambdas=(0.0,), ablation_sizes=(32,),
    ablation_fractions=(1.0,), ablation_qualities=("exact",))
few = experiments.few_mask_config(profile, 1.0, annotated_ids=("train_00000", "train_00001"))
for config in (experiments.guided_config(profile, 1.0), few):
    experiments.run(config, {str(tmp_path)!r}, progress=False, device="cpu")
sys.settrace(None)
for name, module in sorted(sys.modules.items()):
    if name.startswith("agkit.") and name not in loaded_before and hasattr(module, "__file__"):
        print(module.__file__)
for path in sorted(called):
    print(path)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    hashed = set(experiments.source_files())
    root = fingerprints.PACKAGE_ROOT
    files = {Path(line).resolve() for line in out.splitlines() if line.endswith(".py")}
    ran = {path.relative_to(root).as_posix() for path in files if path.is_relative_to(root)}
    ran.discard("__init__.py")  # agkit's own: it only re-exports names (see _imported_modules)
    assert {"experiments/store.py", "experiments/configs.py", "experiments/splits.py"} <= ran
    assert {"method/loss.py", "data/synthetic.py"} <= ran
    assert {"data/io.py", "data/mask_store.py"} <= hashed  # issue 23: what reads images, masks
    assert ran <= hashed, f"run code outside the key: {sorted(ran - hashed)}"


def test_importing_experiments_reads_no_source_and_registers_no_exit_hook():
    script = textwrap.dedent(
        """
        import atexit, pathlib
        registered, read = [], []
        real_register, real_read = atexit.register, pathlib.Path.read_bytes
        def register(function, *args, **kwargs):
            registered.append(function)
            return real_register(function, *args, **kwargs)
        def read_bytes(self):
            read.append(str(self))
            return real_read(self)
        atexit.register, pathlib.Path.read_bytes = register, read_bytes

        from agkit import experiments
        from agkit.experiments import fingerprints, parallel

        sources = [path for path in read if path.endswith(".py")]
        assert not sources, sources
        assert fingerprints._hash_memo == {} and fingerprints._loaded_source == {}
        assert parallel.shutdown_workers not in registered and parallel._pool["executor"] is None
        parallel._worker_pool(1)  # no process starts before a run is submitted
        parallel._worker_pool(2)
        assert registered.count(parallel.shutdown_workers) == 1  # with the first pool only
        parallel.shutdown_workers()
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_changed_mask_png_forces_retrain(tmp_path, monkeypatch):
    folder = tmp_path / "masks"
    config = experiments.guided_config(TINY, 1.0, masks_from=str(folder))
    masks, train = drawn_store(folder, config)
    first = experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert first["masks_hash"] == experiments.store_fingerprint(folder)

    png = masks.path(train.image_ids[0])
    png.touch()  # a new timestamp alone changes nothing
    assert config.key() == first["key"]
    mask = np.zeros((TINY.size, TINY.size), np.uint8)
    mask[2:6, 2:6] = 1
    changed = MaskStore(tmp_path / "scratch").put(train.image_ids[0], mask)
    index = (folder / "index.json").read_bytes()
    png.write_bytes(changed.read_bytes())  # the PNG's bytes change; the index does not
    assert (folder / "index.json").read_bytes() == index
    assert config.key() != first["key"]
    fit = FitCalls()
    monkeypatch.setattr(store, "fit", fit)
    experiments.run(config, tmp_path / "runs", progress=False, device="cpu")
    assert len(fit.calls) == 1
