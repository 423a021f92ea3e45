#!/usr/bin/env python3
"""Run a moto server (AWS API stand-in) on 127.0.0.1 until stdin closes.

The test helpers start this with a pipe on stdin and read the first line of stdout, the
endpoint URL. When the test process exits, for any reason, the pipe closes and this script
ends: no moto server outlives the tests that started it.

Usage: python3 scripts/moto_server.py [PORT]   (PORT 0 or absent: any free port)
"""
import logging
import os
import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        sys.stderr.write("moto is not installed: pip install 'moto[server]'\n")
        sys.exit(3)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "0" else free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"http://127.0.0.1:{port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()
        os._exit(0)


if __name__ == "__main__":
    main()
