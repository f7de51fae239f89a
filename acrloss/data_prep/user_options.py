"""Command-line forms of a user dataset's scheme (``--mirror``, ``--norm-points``), shared
by ``acrloss-train`` and ``acrloss-test``; see :func:`acrloss.config.user_spec`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def parse_mirror(value: str | None) -> "list[int] | str | None":
    """``None`` (not given), ``"none"`` (no mirror map: flips off), or the map from a JSON
    list (``"[1, 0, 2]"``) or a file holding one. Malformed values raise ``SystemExit``."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return "none"
    text = value
    if not value.lstrip().startswith("["):
        path = Path(value)
        if not path.is_file():
            raise SystemExit(f"--mirror {value!r}: neither a JSON list nor an existing file")
        text = path.read_text()
    try:
        mirror = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--mirror {value!r}: not a JSON list ({exc})") from None
    if not isinstance(mirror, list) or not all(isinstance(i, int) for i in mirror):
        raise SystemExit(f"--mirror {value!r}: expected a JSON list of point indices")
    return mirror


def parse_norm_points(values: Sequence[str] | None) -> "list[int] | str | None":
    """``None``, ``"box"`` or two point indices."""
    if values is None:
        return None
    if len(values) == 1 and values[0].lower() == "box":
        return "box"
    try:
        pair = [int(v) for v in values]
    except ValueError:
        pair = []
    if len(pair) != 2:
        raise SystemExit(f"--norm-points {' '.join(values)}: give two point indices or 'box'")
    return pair
