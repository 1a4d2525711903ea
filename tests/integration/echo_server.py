#!/usr/bin/env python3
"""A raw TCP / unix-socket echo server, the fallback when ferry-upstream is not built.

Same command line as the subset of ferry-upstream the integration tests use:
    echo_server.py --listen HOST:PORT|[V6]:PORT|unix:/path [--tcp-echo] [--name N]
With port 0 it prints the bound "HOST:PORT" as one line on stdout. It honours
half-close: when the client shuts its write side, it finishes echoing and then
shuts its own write side. A blocked send stops the reading, so it applies
backpressure like a real server. SIGTERM exits 0.
"""
import argparse
import os
import signal
import socket
import sys
import threading


def serve_conn(conn):
    try:
        while True:
            data = conn.recv(262144)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        # Wait for the peer to close so that nothing we sent is lost to a RST.
        conn.settimeout(30)
        while conn.recv(65536):
            pass
    except OSError:
        pass
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--tcp-echo", action="store_true")
    ap.add_argument("--name", default="echo")
    ap.add_argument("--port-file")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    addr = args.listen
    if addr.startswith("unix:"):
        path = addr[5:]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        shown = addr
    else:
        host, _, port = addr.rpartition(":")
        fam = socket.AF_INET
        if host.startswith("["):
            host, fam = host[1:-1], socket.AF_INET6
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, int(port)))
        p = ls.getsockname()[1]
        shown = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (host, p)
    ls.listen(1024)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(shown + "\n")
    sys.stdout.write(shown + "\n")
    sys.stdout.flush()
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve_conn, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
