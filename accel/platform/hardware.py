"""What this machine is and what it can do: CPU name and flags, peak FLOP/s, resident-set readings, and
how busy other processes keep it.

The one place that reads /proc/cpuinfo, /proc/stat and /proc/self/status (autotune keys its decisions by
the CPU and keeps none timed while others were busy, the model card names it, bench and train report a
share of the peak).
"""
from __future__ import annotations

import functools
import os
import platform
import statistics
import time

# Dense datasheet peaks (TFLOP/s) of the GPUs measured here (SXM parts; PCIe cards are slower), per precision.
GPU_PEAK_TFLOPS = {"H100": {"float32": 67, "tf32": 494.7, "bfloat16": 989.4},
                   "H200": {"float32": 67, "tf32": 494.7, "bfloat16": 989.4}}
# The CPU flags that decide which convolution paths can win (AVX-512; bfloat16 dot instructions; AMX tiles).
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
AMX_FLAGS = frozenset({"amx_tile", "amx_bf16"})   # AMX's tiles and their bfloat16 products
# RCAN_MAX_ISA caps the instructions used, as ONEDNN_MAX_CPU_ISA caps oneDNN's: the CPU's flags above the cap
# are taken as absent (the project's kernels, the autotune's keys), and XLA and, in the bench, torch get the
# same cap. It runs a CPU as an older one of its family would (the AVX2 paths measured on an AVX-512 CPU).
# level -> (flags taken as absent, by prefix; XLA's name for the level; torch's settings for it)
MAX_ISA = {
    "avx2": (("avx512", "amx"), "AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}),
    "avx512": (("avx512_bf16", "amx"), "AVX512",
               {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"}),
    "avx512_bf16": (("amx",), "AVX512_BF16",
                    {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "ATEN_CPU_CAPABILITY": "avx512"}),
}


@functools.cache
def cpuinfo() -> tuple[str, ...]:
    """The lines of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return tuple(f.read().splitlines())
    except OSError:
        return ()


def _field(name: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in cpuinfo() if line.split(":")[0].strip() == name), "")


def cpu_name() -> str:
    return _field("model name") or platform.processor() or "unknown CPU"


def max_isa() -> str | None:
    """RCAN_MAX_ISA's level (None: no cap)."""
    level = os.environ.get("RCAN_MAX_ISA", "").strip().lower()
    if level and level not in MAX_ISA:
        raise ValueError(f"RCAN_MAX_ISA={level}: not a level; use one of {', '.join(MAX_ISA)}")
    return level or None


def cpu_flags(capped: bool = True) -> frozenset[str]:
    """The CPU's flags (/proc/cpuinfo), less those above RCAN_MAX_ISA (unless capped=False)."""
    flags = _field("flags").split()
    level = max_isa()
    if level and capped:
        flags = [f for f in flags if not f.startswith(MAX_ISA[level][0])]
    return frozenset(flags)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe_cpu() -> str:
    """e.g. 'AMD EPYC, 2 cores, avx2 fma avx512f avx512_bf16' (with ', RCAN_MAX_ISA=avx2' under a cap)."""
    flags = " ".join(f for f in NOTABLE_FLAGS if f in cpu_flags())
    return (f"{cpu_name()}, {cores()} cores" + (f", {flags}" if flags else "")
            + (f", RCAN_MAX_ISA={max_isa()}" if max_isa() else ""))


def cpu_peak_gflops() -> float | None:
    """fp32 peak of this CPU: cores × FLOPs per cycle × MHz (from /proc/cpuinfo), when FMA is present."""
    mhz = [float(line.split(":")[1]) for line in cpuinfo() if line.startswith("cpu MHz")]
    flags = cpu_flags()
    if not mhz or "fma" not in flags:
        return None
    # Two FMA pipes of 8 fp32 lanes; Intel's AVX-512 doubles the width, AMD Zen 4 runs it double-pumped.
    intel = any("GenuineIntel" in line for line in cpuinfo())
    per_cycle = 64 if "avx512f" in flags and intel else 32
    return cores() * per_cycle * statistics.median(mhz) / 1000


def peak_tflops(device, precision: str = "float32") -> float | None:
    """The dense peak of a jax device for 'float32', 'tf32' or 'bfloat16' (None when unknown).
    CPUs: the fp32 FMA peak whatever the precision (the bfloat16 units are not counted)."""
    if device.platform == "cpu":
        peak = cpu_peak_gflops()
        return peak / 1000 if peak else None
    name = getattr(device, "device_kind", "") or ""
    chip = next((k for k in GPU_PEAK_TFLOPS if k in name and "PCIe" not in name), None)
    return GPU_PEAK_TFLOPS[chip][precision] if chip else None


def rss_bytes(field: str = "VmRSS") -> int:
    """A resident-set figure of this process from /proc/self/status ('VmRSS', or 'VmHWM' for its peak);
    0 where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0   # no /proc (not Linux)
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_seconds() -> tuple[float, float, int] | None:
    """(CPU seconds the CPUs this process may run on have been busy, of which this process's, those CPUs)
    from /proc/stat's per-CPU lines and os.times(); None where there is no /proc/stat. Only this process's
    CPUs count: in a container pinned to 2 of a host's 64 CPUs, load on the other 62 slows nothing here."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    busy, cpus = 0, 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()) or (mine is not None and int(name[3:]) not in mine):
            continue
        # cpuN user nice system idle iowait irq softirq steal …: busy = all but idle and iowait; steal
        # counts, since it is time a neighbour on the host took from this CPU.
        ticks = [int(v) for v in fields[:8]]
        busy += sum(ticks) - ticks[3] - ticks[4]
        cpus += 1
    if not cpus:
        return None
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, cpus


class OtherLoad:
    """Context manager: the share of the machine's CPU time (0–1) that other processes (and the host, as
    steal time) used while the block ran, in .share after it. None where it cannot be told: no
    /proc/stat, or a block under MIN_SECONDS (the counters tick every 10 ms)."""
    MIN_SECONDS = 0.2

    def __enter__(self):
        self.share = None
        self._start = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._start[0]
        end, start = _cpu_seconds(), self._start[1]
        if start is not None and end is not None and wall >= self.MIN_SECONDS:
            others = (end[0] - start[0]) - (end[1] - start[1])
            self.share = min(max(others / (wall * end[2]), 0.0), 1.0)
        return False
