"""bento/ is not a package: `bentoml serve` imports service.py as a top-level module, so do the same."""

from __future__ import annotations

import sys

from scripts.processes import ROOT

if str(ROOT / "bento") not in sys.path:
    sys.path.insert(0, str(ROOT / "bento"))
