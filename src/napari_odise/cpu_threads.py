"""PyTorch's CPU threads for the model: one per physical core this process may use.

PyTorch's default can be the machine's logical CPU count: hyper-threads share a core's vector
units, so two threads per core slow convolutions down, and a process limited to fewer CPUs
(taskset, a container's CPU quota) gets more threads than it can run, which then wait on each
other at every parallel region. Set once, when the first model goes on the CPU; a choice the
user made (OMP_NUM_THREADS or MKL_NUM_THREADS in the environment, or ``torch.set_num_threads``
after loading) is kept.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_configured = False
_USER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus() -> set[int]:
    """The logical CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many distinct physical cores the given logical CPUs sit on (Linux sysfs topology;
    elsewhere psutil's count of the machine's physical cores, at most the CPUs given)."""
    cpus = usable_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            cores = None
            break
        cores.add((package, core))
    if cores:
        return len(cores)
    try:
        import psutil

        return max(1, min(len(cpus), psutil.cpu_count(logical=False) or len(cpus)))
    except ImportError:
        return max(1, len(cpus))


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """A cgroup v2 CPU limit in CPUs (``cpu.max`` "quota period"), or None when unlimited."""
    try:
        quota, period = cgroup.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def model_threads() -> int:
    """Physical cores usable by this process, within its CPU quota."""
    threads = physical_cores()
    quota = cpu_quota()
    if quota is not None:
        threads = min(threads, max(1, math.ceil(quota)))
    return max(1, threads)


def use_physical_cores() -> int | None:
    """Set torch's intra-op threads to :func:`model_threads` once per process, unless the user
    chose (environment variables); returns the count set, or None when nothing was changed."""
    global _configured
    if _configured or any(os.environ.get(name) for name in _USER_VARIABLES):
        return None
    import torch

    _configured = True
    threads = model_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
