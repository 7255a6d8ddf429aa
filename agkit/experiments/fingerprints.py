"""Fingerprints: what a cache key hashes besides the config.

``source_fingerprint`` hashes the code of the modules that train and score a run
(``source_files``: ``TRAINING_ROOTS`` and every agkit module they import), without docstrings
and comments, so only an edit that can change a result changes the key. ``store_fingerprint``
hashes the bytes of a MaskStore. ``check_source_loaded`` stops training in a process whose
agkit source was edited after it was imported.

Importing this module reads no file: it notes the time only (``IMPORTED_AT``).
"""

from __future__ import annotations

import ast
import hashlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from agkit.experiments.errors import SourceChangedError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The module a run starts from (it trains and scores it), relative to PACKAGE_ROOT. A cache
# key hashes it and every agkit module it imports, found by reading their import statements
# (``source_files``), so a module added to the training path is hashed without anyone
# remembering to list it, and a module off it (packing archives, comparisons, figures) is not.
TRAINING_ROOTS = ("experiments/store.py",)
# When this process imported agkit.experiments: a source file modified later is not the code
# it runs (``check_source_loaded``).
IMPORTED_AT = time.time()

# (folder, stats of its files) -> hash, and (file, its stats) -> the agkit modules it imports:
# a file is read again only when its stats change
_hash_memo: dict = {}
_imports_memo: dict = {}


def _hash_files(files: list[Path], root: Path, *, code: bool = False) -> str:
    """SHA-1 over the names (relative to root) and bytes of ``files``; memoised on their stats.

    code=True hashes the code of Python files (``_code``) instead of their bytes: docstrings,
    comments, line ends and layout are left out, so one source hashes alike everywhere.
    """
    memo_key = (str(root), code, tuple(_stat_key(path) for path in files))
    if memo_key not in _hash_memo:
        digest = hashlib.sha1()
        for path in files:
            content = _code(path) if code else path.read_bytes()
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(content)
            digest.update(b"\0")
        _hash_memo[memo_key] = digest.hexdigest()[:12]
    return _hash_memo[memo_key]


def _stat_key(path: Path) -> tuple:
    """What a memo knows a file by: its path and stats (any write changes one of them)."""
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _code(path: Path) -> bytes:
    """The code of the Python file ``path``: its syntax tree without the docstrings of the
    module, its classes and its functions (comments never reach the tree), as text."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:]
    return _dump(tree).encode()


def _dump(node) -> str:
    """``ast.dump(node)`` (no line numbers), written alike by every Python version: fields that
    are empty (None or []) are left out, as Python 3.13 does, so a field that a newer Python
    adds (``type_params`` in 3.12) leaves the hash of code that does not use it alone."""
    if isinstance(node, ast.AST):
        fields = [(name, getattr(node, name, None)) for name in node._fields]
        shown = [f"{name}={_dump(value)}" for name, value in fields if value not in (None, [])]
        return f"{type(node).__name__}({', '.join(shown)})"
    if isinstance(node, list):
        return f"[{', '.join(_dump(item) for item in node)}]"
    return repr(node)


def _run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``tree``, as ``ast.walk`` gives them, but for those under
    ``if TYPE_CHECKING:``: a type checker reads them, a run never executes them."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(path: Path) -> set[str]:
    """The ``agkit.*`` module names that the Python file ``path`` imports, anywhere in it
    (function-level imports and ``importlib.import_module("agkit...")`` included, those
    under ``if TYPE_CHECKING:`` not):
    ``from agkit.data import io`` gives ``agkit.data`` and ``agkit.data.io``, since either
    may be a module. The package itself (``agkit/__init__.py``) is left out: it only
    re-exports names from the modules that define them, and those are followed."""
    memo_key = _stat_key(path)
    if memo_key not in _imports_memo:
        _imports_memo[memo_key] = _parse_imports(path)
    return _imports_memo[memo_key]


def _parse_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in _run_time_nodes(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return {name for name in names if name.startswith("agkit.")}


def _module_file(name: str, root: Path) -> Path | None:
    """The file of agkit module ``name`` under the package folder ``root``, or None (a name
    such as ``agkit.data.make_loader`` is a function, not a module)."""
    folder = root.joinpath(*name.split(".")[1:])
    for candidate in (folder.with_suffix(".py"), folder / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def source_files(root=None, roots: Sequence[str] = TRAINING_ROOTS) -> list[str]:
    """The files (relative to the package folder ``root``) of ``roots`` and of every agkit
    module they import, directly or through each other: the code a run can execute."""
    root = Path(root) if root is not None else PACKAGE_ROOT
    todo = [root / name for name in roots]
    found: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        for name in _imported_modules(path):
            module = _module_file(name, root)
            if module is not None:
                todo.append(module)
    return sorted(path.relative_to(root).as_posix() for path in found)


def source_fingerprint(root=None, roots: Sequence[str] = TRAINING_ROOTS) -> str:
    """A short hash of the code of the modules that train and score a run.

    ``root``: the agkit package folder (default: the one this module was loaded from).
    Any edit to the code of one of ``source_files(root, roots)`` (agkit/method/loss.py, the
    image reader in agkit/data/io.py, the mask store ...) changes the hash, and with it every
    cache key, so no stored result outlives the code that made it; an edit of a docstring or
    a comment does not. ``roots``: other modules to start from (``agkit.experiments.zoo``
    adds its own).
    """
    root = Path(root) if root is not None else PACKAGE_ROOT
    files = [root / name for name in source_files(root, roots)]
    return _hash_files(files, root, code=True)


_loaded_source: dict = {}  # package folder -> source hash when this process first trained


def check_source_loaded() -> None:
    """Raise SourceChangedError when agkit's source on disk is not the code this process runs.

    A cache key hashes the source on disk; training in a process that imported agkit
    before an edit would store the old code's result under the new code's key. Importing
    reads no source: a file of ``source_files()`` modified after ``IMPORTED_AT`` was edited
    after the import, and the hash of the first call must hold at every later one.
    """
    now = source_fingerprint()
    edited = [
        name for name in source_files() if (PACKAGE_ROOT / name).stat().st_mtime > IMPORTED_AT
    ]
    if _loaded_source.setdefault(str(PACKAGE_ROOT), now) != now or edited:
        raise SourceChangedError(
            f"agkit's source in {PACKAGE_ROOT} changed after this process imported it, so "
            f"training here would run the old code. Restart the kernel (Kernel > Restart) "
            f"and run the notebook again; runs it has stored stay valid."
        )


def store_fingerprint(folder) -> str:
    """A short hash of a MaskStore's content: index.json and the bytes of every mask PNG.

    Drawing, redrawing or deleting a mask changes it; touching a file without changing it
    does not. A missing or empty folder gives the hash of nothing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return _hash_files([], folder)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and (p.name == "index.json" or p.suffix == ".png")
    )
    return _hash_files(files, folder)
