"""Writing files so that nothing is ever half-written: a temporary file beside the target,
then one rename. Also the benchmarks' JSON output. Imports nothing of acrloss."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; when the block ends without error the
    file is given the usual permissions and renamed onto ``path``, else removed.

    ``suffix`` matters to writers that pick a format from the name (``.h5``,
    ``.weights.h5``). Nothing is ever left half-written at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name is shortened in the temp name: a legal 250-byte file name plus ".", "." and
    # mkstemp's 8 characters would exceed the file system's 255-byte limit
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:48]}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> str:
    """``obj`` as indented JSON written atomically to ``path``; returns the text."""
    text = json.dumps(obj, indent=indent, default=str)
    atomic_write_bytes(path, (text + "\n").encode())
    return text


def emit_json(result: Any, path: str | os.PathLike | None = None) -> Any:
    """A benchmark's result: printed as JSON on stdout and, with ``path``, written there
    atomically. Returns ``result``."""
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if path is not None:
        atomic_write_bytes(path, (text + "\n").encode())
    return result
