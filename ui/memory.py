"""Keep the server's resident memory from only ever growing: glibc's allocator, told to use few arenas and to hand
freed pages back to the system.

With many threads (Tornado, one script thread per session, data loaders, training runs) glibc gives threads their own
malloc arenas (up to 8 per core) and keeps freed memory in them: a training run's or a refused upload's hundreds of MB
stay resident after Python has freed them. M_ARENA_MAX = 2 bounds the arenas; malloc_trim(0) every TRIM_SECONDS returns
free pages. Both are no-ops where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

M_ARENA_MAX = -8  # from glibc's malloc.h
ARENAS = 2
TRIM_SECONDS = 15.0
_started = threading.Lock()
_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else False
        except OSError:
            _libc = False
    return _libc


def trim() -> bool:
    """Hand the allocator's free pages back to the system now; True if it could."""
    lib = _glibc()
    if lib:
        lib.malloc_trim(0)
    return bool(lib)


def configure() -> None:
    """Once per server process: few arenas, and a daemon thread that trims every TRIM_SECONDS."""
    if not _started.acquire(blocking=False):
        return
    lib = _glibc()
    if not lib:
        return
    lib.mallopt(M_ARENA_MAX, ARENAS)

    def loop() -> None:
        while True:
            threading.Event().wait(TRIM_SECONDS)
            lib.malloc_trim(0)

    threading.Thread(target=loop, name="vae-malloc-trim", daemon=True).start()
