"""What this process uses of the machine: its peak resident set, for build and eval reports."""

from __future__ import annotations

import resource
import sys

_STATUS = "/proc/self/status"


def peak_rss_bytes() -> int:
    """This process's peak resident set so far.

    Read from VmHWM in /proc/self/status (proc(5)), not from ru_maxrss: Linux carries
    ru_maxrss over from the parent through fork and exec, so a child process would report its
    parent's peak. Where /proc is absent, ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
