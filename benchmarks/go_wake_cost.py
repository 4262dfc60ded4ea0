"""What does waiting for GO asleep add to a CPU timing? The handshake alone, both ways.

The judge's side (`handshake.judge_round`) against the solution's side
(`handshake.serve_rounds`) in a forked process, with no call: each round publishes
nothing for half a millisecond (as the judge publishes inputs between ARMED and GO),
then times GO -> DONE. Rounds alternate between spinning on the GO word and waiting
asleep for the GO datagram, so a slow spell of the machine falls on both alike.
Reported per way: the 20th percentile (what the judge would subtract; see
`timing.calibrate_handshake`), the median and the 90th percentile, in microseconds.
The judge subtracts only the spun-on handshake, so the difference is what a timing
asleep holds beyond the call.

    .venv/bin/python benchmarks/go_wake_cost.py [--rounds 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def one_run(rounds: int) -> dict[str, list[float]]:
    from solforge.bench.handshake import HotLine, judge_round, serve_rounds, stop

    line = HotLine()
    page_fd, sock_fd = line.their_fds
    pid = os.fork()
    if pid == 0:
        try:
            serve_rounds(os.dup(page_fd), os.dup(sock_fd), lambda slot, profile: slot, lambda armed: None,
                         lambda exc: None)
        finally:
            os._exit(0)
    us: dict[str, list[float]] = {"spin": [], "wake": []}
    try:
        for i in range(rounds):
            wake = i % 2 == 1
            ns = judge_round(line, i, 0, 10.0, on_armed=lambda: time.sleep(0.0005), wake=wake)
            us["wake" if wake else "spin"].append(ns / 1e3)
        stop(line)
        os.waitpid(pid, 0)
    finally:
        line.close()
    return us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} UTC, {args.rounds} rounds a run, alternating")
    print("| run | GO | rounds | p20 us | median us | p90 us |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for run in range(1, args.repeats + 1):
        for way, xs in one_run(args.rounds).items():
            xs = sorted(xs)
            print(f"| {run} | {way} | {len(xs)} | {xs[len(xs) // 5]:.1f} | {statistics.median(xs):.1f} | "
                  f"{xs[len(xs) * 9 // 10]:.1f} |")


if __name__ == "__main__":
    main()
