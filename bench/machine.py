"""What the figures were measured on: CPU, cores, memory, load and Python."""

from __future__ import annotations

import os
import platform


def machine() -> dict[str, object]:
    """CPU model, cores, memory, load averages and this Python."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as info:
        memory_kb = int(info.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024**2, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def describe(before: dict[str, object], after: dict[str, object]) -> str:
    """One line: CPU, cores, memory, and the 1-minute load average before and after."""
    return (
        f"{before['cpu']}, {before['cores']} cores, {before['memory_gb']} GB; 1-minute load "
        f"average {before['load_average'][0]} before, {after['load_average'][0]} after"
    )
