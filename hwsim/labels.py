"""Label arrays (``'compute'``, ``'memory'``, ...) no wider than the labels they hold.

A numpy string array stores every element at the width of its longest possible value (4 bytes
per character). Sized by the labels a sweep actually uses, a 10M-point sweep whose binding
constraint is always ``'memory'`` holds 24 bytes per point instead of 152.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def label_array(index, names: Sequence[str]) -> np.ndarray:
    """``names[index]`` elementwise (``index``: ints into ``names``, any shape), as a str array
    as wide as the longest name that occurs."""
    index = np.asarray(index, dtype=np.intp)
    if index.ndim == 0:  # one point: the name itself (what indexing the array gives)
        return np.str_(names[int(index)])
    used = np.bincount(index.ravel(), minlength=len(names)) > 0
    width = max((len(n) for n, u in zip(names, used) if u), default=1)
    # names that do not occur may be cut to the width: no element refers to them
    return np.asarray(names, dtype=f"<U{max(width, 1)}")[index]
