"""The reference summary of a version's training data, which the backend measures drift against.

One KLL quantile sketch per feature (Apache DataSketches, k=200: exact up to 200 rows, about 1.3%
rank error beyond) and the count of each training label. It is stored with the version (in its
info file, answered by /model as `reference`) in the form the backend's
`backend/monitoring/drift.py::Summary.from_doc` reads:

    {"rows": n, "sketches": {feature: base64 of kll_doubles_sketch.serialize()}, "labels": {label: n}}

Both sides pin the same datasketches release (the locks agree), so the bytes mean the same thing.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from datasketches import kll_doubles_sketch

SKETCH_K = 200


def reference_summary(
    feature_names: Sequence[str], x: npt.NDArray[np.float64], y: npt.NDArray[np.str_]
) -> dict[str, Any]:
    sketches = {}
    for j, name in enumerate(feature_names):
        sketch = kll_doubles_sketch(SKETCH_K)
        sketch.update(np.ascontiguousarray(x[:, j], dtype=np.float64))
        sketches[name] = base64.b64encode(bytes(sketch.serialize())).decode("ascii")
    return {
        "rows": len(x),
        "sketches": sketches,
        "labels": dict(Counter(str(label) for label in y)),
    }
