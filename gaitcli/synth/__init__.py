"""Synthetic CASIA-B-shaped silhouette data (``gait synth``); see docs/synth.md.

:mod:`gaitcli.synth.body` draws people and walks, :mod:`gaitcli.synth.render` films them,
:mod:`gaitcli.synth.generate` writes the PNG tree.
"""

from __future__ import annotations

from gaitcli.synth.generate import CASIA_B_TYPES, CASIA_B_VIEWS, SynthSummary, synthesize

__all__ = ["CASIA_B_TYPES", "CASIA_B_VIEWS", "SynthSummary", "synthesize"]
