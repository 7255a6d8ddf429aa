"""What a check tells the student: the one-sentence Hint, and the line of their cell an error
came from.
"""

from __future__ import annotations

import site
import sysconfig
import traceback
from pathlib import Path

import numpy as np
import torch


class Hint(Exception):
    """What is wrong with a student's answer, in one sentence."""


# Where code that is not the student's lives: this package and the installed libraries.
_KIT_DIR = str(Path(__file__).resolve().parents[2])
_LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    | set(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    | {site.getusersitepackages()}
)


def _is_theirs(filename: str) -> bool:
    """Whether a traceback frame's file is the student's (a notebook cell, a script)."""
    if filename.startswith("<frozen"):
        return False
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return not path.startswith(_KIT_DIR) and not any(path.startswith(d) for d in _LIBRARY_DIRS)


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raised(error: Exception, fn_name: str, when: str | None, advice: str | None) -> str:
    """'your function raised X at line N of your cell: ...' with the student's own line."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if _is_theirs(f.filename)]
    where = ""
    if frames:
        frame = frames[-1]  # the innermost line of their code
        where = f" at line {frame.lineno} of your cell"
        if frame.name not in (fn_name, "<lambda>", "<module>"):
            where += f" (in {frame.name})"
    message = f"your function raised {type(error).__name__}{where}"
    if when:
        message = f"{when}, {message}"
    detail = _first_line(error)
    message += f": {detail}" if detail else ""
    return message + (f". {advice}" if advice else ".")


def _what(value) -> str:
    """A returned value in a few words: 'a dict', 'a tensor of shape (3,)', 'None'."""
    if value is None or value is Ellipsis:
        return "nothing"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"
