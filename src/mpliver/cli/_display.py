"""What the command line draws with rich for the library: count bars and tables (the training bar is in
`_train_progress`, which needs torch).

The library reports through callbacks and returns rows (`write_cohort`'s `progress`, `stats.cohort_rows`,
`realism.realism_rows`); the commands turn them into rich output here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


@contextlib.contextmanager
def count_bar(label: str, console: Console | None = None) -> Iterator[Callable[[int, int], None]]:
    """A bar `label ━━━ done/total ETA` on stderr; yields `progress(done, total)` for the library to call.
    The bar appears at the first call and stays, complete, once `done` reaches `total`."""
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console or Console(stderr=True))
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task(label, total=total)
            bar.start()
        bar.update(task, completed=done, total=total)
        if done >= total and bar.live.is_started:
            bar.stop()

    try:
        yield progress
    finally:
        if bar.live.is_started:
            bar.stop()


def table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
          styles: Callable[[str], str] | None = None, left: int = 1, center: Sequence[str] = ()) -> Table:
    """A rich Table: the first `left` columns left-aligned, columns named in `center` centred, the others
    right-aligned; `styles(cell)` may wrap a cell in markup."""
    out = Table(title=title or None)
    for i, name in enumerate(header):
        justify = "left" if i < left else ("center" if name in center else "right")
        out.add_column(name, justify=justify)
    for row in rows:
        out.add_row(*[styles(c) if styles else c for c in row])
    return out
