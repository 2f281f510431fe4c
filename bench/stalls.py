#!/usr/bin/env python3
"""bench/stalls.py - does this machine pause its CPUs? Run it before trusting a tail latency.

One process per CPU spins for --seconds, reading CLOCK_MONOTONIC in a loop; any gap above
--gap-ms between two readings is time that process did not run although it never slept: on an idle
machine, the hypervisor (or a cgroup's CPU quota) held the CPU back. It prints each gap with the
wall-clock time it ended (milliseconds within the second: pauses by a CPU quota end on the
quota's period, 100 ms by default, so their ends share the same few digits) and the steal time
/proc/stat counted meanwhile.

    bench/stalls.py                 # 20 s, every CPU busy: the condition the benchmarks create
    bench/stalls.py --procs 1       # one CPU busy: is the VM paused even below its quota?

Nothing else should run meanwhile (the processes would share CPUs and report the scheduler's
slices, a few ms each, not pauses). It measures; it asserts nothing."""
import argparse
import multiprocessing
import os
import time


def steal_ticks():
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def spin(seconds, gap_s, out):
    gaps = []
    now = time.monotonic
    last = now()
    end = last + seconds
    while last < end:
        t = now()
        if t - last > gap_s:
            gaps.append((t - last, time.time()))
        last = t
    out.put(gaps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--procs", type=int, default=os.cpu_count(), help="spinning processes (default: one per CPU)")
    ap.add_argument("--gap-ms", type=float, default=20, help="report gaps longer than this")
    args = ap.parse_args()
    tick = os.sysconf("SC_CLK_TCK")
    q = multiprocessing.Queue()
    s0 = steal_ticks()
    procs = [multiprocessing.Process(target=spin, args=(args.seconds, args.gap_ms / 1000, q))
             for _ in range(args.procs)]
    for p in procs:
        p.start()
    found = [g for _ in procs for g in q.get()]
    for p in procs:
        p.join()
    steal_s = (steal_ticks() - s0) / tick
    for gap, wall in sorted(found, key=lambda g: g[1]):
        print(f"  gap {gap * 1000:7.1f} ms, ended at {time.strftime('%H:%M:%S', time.gmtime(wall))}"
              f".{int(wall * 1000) % 1000:03d}")
    total = sum(g for g, _ in found)
    print(f"{args.procs} processes spinning {args.seconds:g} s: {len(found)} gaps over {args.gap_ms:g} ms, "
          f"{total * 1000:.0f} ms in all (longest {max((g for g, _ in found), default=0) * 1000:.0f} ms); "
          f"steal counted by /proc/stat: {steal_s:.2f} s ({100 * steal_s / (args.seconds * args.procs):.1f}% "
          f"of the spinning CPU time)")


if __name__ == "__main__":
    main()
