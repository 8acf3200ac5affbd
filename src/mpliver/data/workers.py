"""Worker processes that end with the run that started them.

`concurrent.futures` workers wait on their pool's queue; when the parent is killed (kill -9, out of memory)
that queue never closes, so they live on: they hold what they inherited (a cache's lock) and keep writing
into a folder a rerun is writing too. `end_with_parent` as the pool's initializer ends them instead.
"""

from __future__ import annotations

import os
import threading
import time


def end_with_parent(parent: int, poll_s: float = 0.2) -> None:
    """Pool initializer: `os._exit` the worker as soon as its parent process `parent` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
