"""Fault: never returns."""


def run(x, w):
    while True:
        pass
