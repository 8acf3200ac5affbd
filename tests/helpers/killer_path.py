"""A path that kills the process that opens it: stands for a study that makes its preparation process die
(e.g. killed for memory), for the pipeline's recovery test. Importable in spawned processes (tests/ is on
their sys.path, as spawn copies the parent's)."""

from __future__ import annotations

import os


class KillerPath:
    """An `os.PathLike` whose `os.fspath` ends the process at once (no exception, no cleanup), as the OOM
    killer would."""

    def __init__(self, path: os.PathLike | str):
        self.path = str(path)

    def __fspath__(self) -> str:
        os._exit(9)
