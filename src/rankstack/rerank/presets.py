"""Presets for published models: one name = family + template + passage preparation + budgets +
pooling + prefixes + precision, i.e. the reference implementation's behaviour.

``PRESETS[name]`` is a re-ranker spec mapping (the keys ``family``, optionally ``model``,
``backend`` and ``settings``), merged *under* what the user gives: every knob stays overridable.
Filled in by the presets work (issue 16); consumed by :func:`rankstack.rerank.load_reranker`.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {}
