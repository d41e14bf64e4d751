"""pipelines/ imports bento/'s training code as top-level modules (train, fruitstack_model), as the
runner does with bento/ on its path (the image's PYTHONPATH)."""

from __future__ import annotations

import sys

from scripts.processes import ROOT

if str(ROOT / "bento") not in sys.path:
    sys.path.insert(0, str(ROOT / "bento"))
