"""Where a result came from: this machine's CPU, its host, and the code's version and commit.

Run folders record it when they are created (their ownership marker) and when
they finish (``summary.json``), so a study's records can name the CPU and the
commit that produced each number.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def machine_cpu() -> str:
    """This machine's CPU model and core count (``/proc/cpuinfo``, else ``platform``)."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the tfprune code running, or None outside a git checkout.

    None too when the running code is not the checkout's own (a copy extracted
    inside an ignored folder of a repository, as the study pins its code): the
    repository's HEAD would name the wrong code.
    """
    package = Path(__file__).resolve().parent
    try:
        tracked = subprocess.run(["git", "-C", str(package), "ls-files", "--error-unmatch",
                                  "provenance.py"], capture_output=True, timeout=10,
                                 check=False)
        result = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    ok = tracked.returncode == 0 and result.returncode == 0 and len(commit) == 40
    return commit if ok else None


def host() -> str:
    """This machine's host name."""
    return socket.gethostname()


def provenance() -> dict:
    """``{"cpu", "host", "tfprune", "code_commit"}`` of the running process."""
    from tfprune import __version__

    return {"cpu": machine_cpu(), "host": host(), "tfprune": __version__,
            "code_commit": code_commit()}
