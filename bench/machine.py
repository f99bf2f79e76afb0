"""What the figures were measured on: CPU, cores, memory, load and Python."""

from __future__ import annotations

import os
import platform

# CPU features that change the speed (and, for 8-bit weights, the results) of onnxruntime's
# int8 kernels: with VNNI a uint8 x int8 dot product is one instruction.
INT8_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")


def machine() -> dict[str, object]:
    """CPU model, family and int8-relevant features, cores, memory, load averages, Python."""
    fields: dict[str, str] = {}
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    cpu = fields.get("model name", "unknown")
    if "cpu family" in fields:
        cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    with open("/proc/meminfo", encoding="utf-8") as info:
        memory_kb = int(info.readline().split()[1])
    return {
        "cpu": cpu,
        "int8_features": [feature for feature in INT8_FEATURES if feature in flags],
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024**2, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def describe(before: dict[str, object], after: dict[str, object]) -> str:
    """One line: CPU and its int8 features, cores, memory, 1-minute load before and after."""
    cpu = str(before["cpu"])
    if "int8_features" in before:  # not recorded before 2026-12-03
        present = list(before["int8_features"])  # type: ignore[call-overload]
        missing = [feature for feature in INT8_FEATURES if feature not in present]
        cpu += f" ({', '.join(present) or 'no AVX2'}; without {', '.join(missing) or 'nothing'})"
    return (
        f"{cpu}, {before['cores']} cores, {before['memory_gb']} GB; 1-minute load "
        f"average {before['load_average'][0]} before, {after['load_average'][0]} after"
    )
