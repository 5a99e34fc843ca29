"""The one progress display of long runs: a bar with an ETA on a terminal, nothing when piped.

Every long-running command (``simulate`` through :func:`alamp_fast.al.loop.run`, ``bench``
through :func:`alamp_fast.bench.run_suite`, ...) asks :func:`make_progress` for its bar, so
they all follow one rule: ``progress="auto"`` shows the bar only when the stream (standard
error) is a terminal, so logs and pipes get no carriage-return noise. The bar is tqdm's
(a core dependency) with the ETA spelled out; without tqdm a one-line display does the same.

It lives at the package's top level, not in :mod:`alamp_fast.cli`, because library functions
(the AL loop, the kernel benchmark suite) draw it, and a library room does not import the
command-line room.

>>> import io
>>> make_progress("auto", 10, "x", stream=io.StringIO()) is None  # not a terminal: quiet
True
"""

from __future__ import annotations

import sys
import time

__all__ = ["BAR_FORMAT", "LineProgress", "make_progress", "stream_is_terminal"]

#: tqdm's bar with the time left written as "ETA" (and the postfix inside the brackets)
BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}{postfix}]"
)


def stream_is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (False for pipes, files, closed or odd streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


class LineProgress:
    """A one-line progress display with an ETA, for when tqdm is missing (tqdm's methods that
    the package calls: ``update``, ``set_postfix_str``, ``close``)."""

    def __init__(self, total: int, desc: str, stream, initial: int = 0) -> None:
        self.total, self.desc, self.stream = total, desc, stream
        self.n, self.t0, self.postfix, self._last = initial, time.perf_counter(), "", 0.0
        self._start = initial  # the ETA counts only the steps done in this process

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if now - self._last < 0.5 and self.n < self.total:
            return
        self._last = now
        spent = now - self.t0
        done = self.n - self._start
        eta = spent / done * (self.total - self.n) if done > 0 else float("nan")
        self.stream.write(
            f"\r{self.desc}: {self.n}/{self.total} [{spent:.0f} s, ETA {eta:.0f} s] {self.postfix}"
        )
        self.stream.flush()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def make_progress(
    progress, total: int, desc: str, initial: int = 0, *, unit: str = "it", stream=None
):
    """A progress bar with an ETA over ``total`` steps, or None (no display).

    Parameters
    ----------
    progress : bool or "auto"
        True: always; False: never; ``"auto"``: only when ``stream`` is a terminal, so piped
        and logged runs stay quiet.
    total, desc, initial, unit
        Steps in all, the label, steps already done (a resumed run), the step's name.
    stream : file, optional
        Where the bar goes (default: ``sys.stderr`` at the time of the call).
    """
    stream = sys.stderr if stream is None else stream
    if progress == "auto":
        progress = stream_is_terminal(stream)
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return LineProgress(total, desc, stream, initial=initial)
    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        desc=desc,
        file=stream,
        bar_format=BAR_FORMAT,
        dynamic_ncols=True,
    )
