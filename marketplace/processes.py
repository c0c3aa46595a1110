"""Scratch files of worker processes: a file or folder named after its process is removed by the
next worker to start once that process is gone (killed while it held decrypted rows)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
