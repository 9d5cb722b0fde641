"""`wlbridge run` limits glibc's malloc arenas before its threads start
(wlbridge.cli.runner.limit_malloc_arenas): threads that allocate share them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# A child process: (maybe) the limit, then six threads that each malloc once, then the number
# of arenas ("<heap nr=...>") in glibc's own malloc_info report.
CHILD = r"""
import ctypes, re, sys, tempfile, threading
from wlbridge.cli.runner import limit_malloc_arenas
limited = limit_malloc_arenas() if sys.argv[1] == "limit" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
kept = []
go = threading.Barrier(6)
def grab():
    go.wait()
    kept.append(libc.malloc(4096))
threads = [threading.Thread(target=grab) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
with tempfile.NamedTemporaryFile("r") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    print(limited, len(re.findall(r'<heap nr="\d+">', out.read())))
"""


def arenas(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         timeout=60, check=True, env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_threads_share_at_most_two_arenas_unless_the_environment_says_otherwise():
    assert arenas("limit") == ("True", 2)         # (the main thread's and one more)
    limited, unlimited = arenas("none")
    assert limited == "None" and unlimited > 2, unlimited
    env = {"MALLOC_ARENA_MAX": "4"}               # an explicit setting wins
    assert arenas("limit", **env) == ("False", 4)
