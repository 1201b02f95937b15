"""What machine this is, as records name it: the CPU's model name (benchmark records, the shipped
worlds' build records). One reader, so that every record names the same CPU the same way."""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The first `model name` line of `cpuinfo` (Linux's /proc/cpuinfo, where `lscpu` reads its
    "Model name"); elsewhere, or on a CPU whose cpuinfo has none (some ARM), the platform's
    processor or machine name, else "unknown"."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
