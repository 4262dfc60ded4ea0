"""Profiling a PyTorch model into ranked candidates, each mapped to a Definition at the real shapes.

    from solforge.profile import profile_model
    result = profile_model("llama-3.1-8b", layers=2, seq_len=128, out="prof")   # prof/profile.json
    for row in result.rows:
        print(row.label, row.share, row.definition, row.gain_at_sol)

`targets` builds the model (shipped configs, config.json, cached Hub ids, factories),
`profiler` runs torch.profiler and attributes each op to its module, `candidates` groups
ops into fusable candidates and maps them to definitions, `report` ranks them and writes
`profile.json`. torch and transformers are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solforge.profile.report import CandidateRow, ProfileResult, profile_model, read_profile, write_profile
    from solforge.profile.targets import SHIPPED_CONFIGS, Target, load_target

_LAZY = {
    "CandidateRow": "report", "ProfileResult": "report", "profile_model": "report", "read_profile": "report",
    "write_profile": "report", "profile_target": "report", "SHIPPED_CONFIGS": "targets", "Target": "targets",
    "load_target": "targets",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"solforge.profile.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'solforge.profile' has no attribute '{name}'")


__all__ = sorted(_LAZY)
