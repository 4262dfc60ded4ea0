"""Fault: reads address 0 through ctypes (SIGSEGV)."""
import ctypes


def run(x, w):
    ctypes.string_at(0)
    return x
