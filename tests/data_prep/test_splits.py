"""acrloss.data_prep.splits.evenly_spaced: the faces generalization.py --limit N scores."""
from __future__ import annotations

import numpy as np
import pytest

from acrloss.data_prep.splits import evenly_spaced


def test_evenly_spaced_picks_ends_and_spreads():
    idx = evenly_spaced(805, 100)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert idx[0] == 0 and idx[-1] == 804
    gaps = np.diff(idx)
    assert gaps.min() >= 8 and gaps.max() <= 9  # 804 / 99 = 8.12


def test_evenly_spaced_all_when_no_limit():
    assert evenly_spaced(5, 0).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(5, 3).tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="must be >= 0"):
        evenly_spaced(5, -1)
