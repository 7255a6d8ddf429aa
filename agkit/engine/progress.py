"""Progress bars: one factory that every loop of the kit draws its bars with, and the
``Progress`` callback that draws ``fit``'s.

``bar(...)`` takes tqdm's arguments. In a terminal or a live notebook it is tqdm's own bar;
after ``use_text_bars()`` (what ``agkit.course.notebook.setup`` calls) it is a ``TextBar``,
a line of plain text that an executed notebook keeps in its finished state.
"""

from __future__ import annotations

import io
from typing import Any

from tqdm.auto import tqdm as auto_tqdm
from tqdm.std import tqdm as std_tqdm

from agkit.engine.callbacks import Callback, TrainingState

_style = {"text": False}


def use_text_bars(on: bool = True) -> None:
    """Draw every later bar as a ``TextBar`` (on=True) or as tqdm's default (on=False)."""
    _style["text"] = on


def bar(*args: Any, **kwargs: Any) -> std_tqdm:
    """A progress bar (tqdm's signature): a ``TextBar`` after ``use_text_bars()``."""
    return TextBar(*args, **kwargs) if _style["text"] else auto_tqdm(*args, **kwargs)


class TextBar(std_tqdm):
    """A tqdm bar drawn as one line of plain text that is replaced in place.

    ipywidget bars are drawn by the browser, so an executed copy (papermill, ``make
    course``, GitHub's viewer) keeps only their first frame, a frozen "0%". This bar sends
    its line as a display that is updated in place (``display_id``): live it moves like any
    bar, and a saved notebook holds its last state, the finished bar.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._handle: Any = None
        kwargs["file"] = io.StringIO()  # tqdm's own writes go nowhere; display() draws
        kwargs.setdefault("mininterval", 0.5)
        kwargs.setdefault("ncols", 90)
        kwargs.setdefault("ascii", False)  # block characters, as a terminal would show
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        # A loop left early (a time limit) leaves the bar short of its total: say so,
        # rather than let a saved notebook show what looks like a bar that froze.
        if not self.disable and self.total and self.n < self.total and self.leave:
            early = f"{self.desc} (stopped early)" if self.desc else "stopped early"
            self.set_description_str(early, refresh=False)
        super().close()

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        from IPython import get_ipython
        from IPython.display import display

        line = self.__str__() if msg is None else msg
        if get_ipython() is None:  # not in a notebook: one printed line per state
            if line:
                print(line)
            return True
        text = {"text/plain": line}
        if self._handle is None:
            self._handle = display(text, raw=True, display_id=True)
        else:
            self._handle.update(text, raw=True)
        return True


class Progress(Callback):
    """A bar over the epochs of ``fit`` (loss, attention loss and validation accuracy beside
    it) and, for epochs of ``batch_bar_from`` batches or more, one over each epoch's batches;
    shorter epochs would only add lines to a notebook. ``desc``: the bar's label (default
    the run's lambda)."""

    def __init__(self, desc: str | None = None, batch_bar_from: int = 50):
        self.desc, self.batch_bar_from = desc, batch_bar_from
        self.epoch_bar: std_tqdm | None = None
        self.batch_bar: std_tqdm | None = None

    def on_fit_start(self, state: TrainingState) -> None:
        desc = self.desc or f"lam={state.config.get('lam', 0):g}"
        self.epoch_bar = bar(total=state.epochs, initial=state.epoch, desc=desc)

    def on_batch_end(self, state: TrainingState, losses: dict[str, float]) -> None:
        if self.batch_bar is None and (state.batches or 0) >= self.batch_bar_from:
            self.batch_bar = bar(total=state.batches, desc=f"epoch {state.epoch + 1}", leave=False)
        if self.batch_bar is not None:
            self.batch_bar.update()

    def on_epoch_end(self, state: TrainingState, row: dict[str, Any]) -> None:
        if self.batch_bar is not None:
            self.batch_bar.close()
            self.batch_bar = None
        if self.epoch_bar is not None:
            shown = ("loss", "att", "val_accuracy")
            self.epoch_bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in shown})
            self.epoch_bar.update()

    def on_fit_end(self, state: TrainingState) -> None:
        if self.epoch_bar is not None:
            self.epoch_bar.close()
            self.epoch_bar = None
