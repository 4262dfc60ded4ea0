"""Fault: calls sys.exit in the middle of the call."""
import sys


def run(x, w):
    sys.exit(3)
