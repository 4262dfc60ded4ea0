"""Moved: SOL reports on traces live in `solforge.roofline.attach`, devices in `solforge.hardware.device`.

This module re-exports them under their old names until the bench and the search import
them from their new homes; then it goes.
"""

from __future__ import annotations

from solforge.hardware.device import Device, split_device
from solforge.roofline.attach import attach_sol, baseline_latencies, measured_latency_ms

__all__ = ["attach_sol", "baseline_latencies", "detect_device", "measured_latency_ms", "normalize_device"]


def normalize_device(device: str) -> str:
    """The device string in one spelling ('cpu', 'cuda:N'), without detecting; SpecError for an unknown one."""
    kind, index = split_device(device)
    return f"{kind.name}:{index}" if kind.indexed else kind.name


def detect_device(device: str) -> Device:
    """`Device.parse(device)`: detected once per process and device ('cuda' and 'cuda:0' are one)."""
    return Device.parse(device)
