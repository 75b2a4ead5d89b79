"""Loopback ports for the servers that tests and benchmarks start.

Ports come from below the kernel's ephemeral range (32768+), so no client socket opened meanwhile can take a
port between our check and the server's bind, and none is handed out twice in one test session.
"""

from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()


def free_port(low: int = 20000, high: int = 32000) -> int:
    for _ in range(2000):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}-{high}")
