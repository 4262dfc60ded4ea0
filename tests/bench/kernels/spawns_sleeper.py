"""Fault: starts a long-lived process (hidden from the static guard), then hangs."""
import importlib


def run(x, w):
    launcher = importlib.import_module("".join(reversed("ssecorpbus")))
    launcher.Popen(["sleep", "297.5"])  # a duration no other process here uses: the test finds it by it
    while True:
        pass
