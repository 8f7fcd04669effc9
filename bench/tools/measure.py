"""Helpers shared by the benchmark scripts: CPU time of this process and its children, alternating timed rounds with
medians, and a record of the machine's load while a measurement runs (the machine may be shared)."""
from __future__ import annotations
import os, resource, statistics, threading, time

import psutil


def cpu_seconds() -> float:
    "CPU seconds used so far by this process and its finished children (worker processes, ffmpeg)."
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _tree_cpu_seconds(me) -> float:
    "CPU seconds of this process, its finished children and its live descendants."
    total = cpu_seconds()
    for p in me.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # ended meanwhile: counted with the finished children once waited for
            pass
    return total


def _busy_seconds() -> float:
    "CPU seconds all processes of the machine have used so far (all cores)."
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class LoadMonitor:
    "Record the machine's load while a block runs: load averages before/after and the CPU other processes used."

    def __init__(self, interval=1.0):
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self.me = psutil.Process()

    def _sample(self):
        busy, ours, t = _busy_seconds(), _tree_cpu_seconds(self.me), time.perf_counter()
        while not self._stop.wait(self.interval):
            busy2, ours2, t2 = _busy_seconds(), _tree_cpu_seconds(self.me), time.perf_counter()
            self.samples.append(max(0.0, (busy2 - busy) - (ours2 - ours)) / (t2 - t))
            busy, ours, t = busy2, ours2, t2

    def __enter__(self):
        self.load_before = [round(v, 2) for v in os.getloadavg()]
        self.busy0, self.ours0, self.t0 = _busy_seconds(), _tree_cpu_seconds(self.me), time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self.t0
        others = (_busy_seconds() - self.busy0) - (_tree_cpu_seconds(self.me) - self.ours0)
        self.record = dict(
            cores=os.cpu_count(), seconds=round(wall, 1),
            loadavg_1_5_15_before=self.load_before, loadavg_1_5_15_after=[round(v, 2) for v in os.getloadavg()],
            other_processes_cores_mean=round(max(0.0, others) / wall, 2),
            other_processes_cores_max=round(max(self.samples), 2) if self.samples else None,
            other_processes_percent_mean=round(100 * max(0.0, others) / wall / os.cpu_count(), 1),
            note="CPU used by processes outside this benchmark's process tree, in cores (psutil: machine busy "
                 "time less this tree's CPU time), sampled every "
                 f"{self.interval:g} s; on a quiet machine it stays near 0")
        return False


def sync(device):
    "Wait for the device's queued work (CUDA), so that wall times cover it."
    if getattr(device, "type", "cpu") == "cuda":
        import torch
        torch.cuda.synchronize(device)


def alternating(cases, rounds, device=None, warmup=True):
    """Run every callable of `cases` (name -> fn) once per round, in turn, the order reversed every other round;
    return name -> dict(wall_s, cpu_s: medians; wall_runs_s, cpu_runs_s) and name -> the last result."""
    names, runs, last = list(cases), {n: [] for n in cases}, {}
    if warmup:
        for n in names:
            last[n] = cases[n]()
            sync(device)
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            c, t = cpu_seconds(), time.perf_counter()
            last[n] = cases[n]()
            sync(device)
            runs[n].append((time.perf_counter() - t, cpu_seconds() - c))
    out = {}
    for n, rs in runs.items():
        walls, cpus = [w for w, _ in rs], [c for _, c in rs]
        out[n] = dict(wall_s=round(statistics.median(walls), 4), cpu_s=round(statistics.median(cpus), 4),
                      wall_runs_s=[round(w, 4) for w in walls], cpu_runs_s=[round(c, 4) for c in cpus])
    return out, last


def ratio(timings, ours, peer) -> dict:
    "Our median time over the peer's, by wall time and by CPU time (below 1: we take less)."
    a, b = timings[ours], timings[peer]
    return dict(wall=round(a["wall_s"] / b["wall_s"], 3), cpu=round(a["cpu_s"] / b["cpu_s"], 3))
