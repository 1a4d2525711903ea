#!/usr/bin/env python3
"""Socket options on ferry's own sockets, read from the running process
(pidfd_getfd): accepted client sockets have TCP_NODELAY, which they inherit
from the listening socket (one setsockopt per listener, none per
connection), in http and tcp mode; so do ferry's upstream connections.
Without it, a response written in two parts waits for the client's delayed
ACK (40 ms on Linux)."""
import contextlib
import ctypes
import errno
import os
import socket

import harness
import opslib

SYS_pidfd_getfd = 438
_libc = ctypes.CDLL(None, use_errno=True)


def steal_fd(pid, fd):
    """A duplicate of PID's descriptor FD in this process."""
    pidfd = os.pidfd_open(pid)
    try:
        got = _libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if got < 0:
            e = ctypes.get_errno()
            if e in (errno.EPERM, errno.ENOSYS):  # not allowed here, or an old kernel
                raise harness.Skip("pidfd_getfd: %s" % os.strerror(e))
            raise AssertionError("pidfd_getfd(%d, fd %d): %s" % (pid, fd, os.strerror(e)))
        return got
    finally:
        os.close(pidfd)


def socket_inodes(pid):
    """{inode: fd} of PID's sockets."""
    d = "/proc/%d/fd" % pid
    links = {}
    for fd in os.listdir(d):
        with contextlib.suppress(OSError):
            links[int(fd)] = os.readlink(os.path.join(d, fd))
    return {int(link[8:-1]): fd for fd, link in links.items() if link.startswith("socket:[")}


def tcp_inode(local_port, remote_port):
    """Inode of the IPv4 TCP socket 127.0.0.1:LOCAL -> 127.0.0.1:REMOTE."""
    want_l, want_r = "0100007F:%04X" % local_port, "0100007F:%04X" % remote_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1] == want_l and cols[2] == want_r:
                return int(cols[9])
    return None


def nodelay_of(pid, local_port, remote_port):
    ino = tcp_inode(local_port, remote_port)
    assert ino, "no socket 127.0.0.1:%d -> :%d in /proc/net/tcp" % (local_port, remote_port)
    fd = socket_inodes(pid).get(ino)
    assert fd is not None, "socket inode %d is not ferry's" % ino
    dup = steal_fd(pid, fd)
    s = socket.socket(fileno=dup)
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        s.close()


def check_client_nodelay(h, mode):
    up = h.upstream(name="e") if mode == "tcp" else harness.http_upstream(h)
    f = opslib.start(h, [("l", {"mode": mode, "upstream": "app"})], [("app", [up], {})])
    port = f.lports["l"]
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        if mode == "tcp":
            harness.echo_check(c)
        else:
            c.sendall(harness.build_request("GET", "/", [("Host", "s.test")]))
            assert harness.HttpClient(c).read_response("GET", timeout=5).status == 200
        me = c.getsockname()[1]
        assert nodelay_of(f.pid, port, me) == 1, "%s client socket without TCP_NODELAY" % mode
        # ferry's side towards the upstream, too
        up_port = up[2]
        ino_fds = socket_inodes(f.pid)
        ups = []
        with open("/proc/net/tcp") as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if cols[2] == "0100007F:%04X" % up_port and int(cols[9]) in ino_fds:
                    ups.append(int(cols[1].split(":")[1], 16))
        assert ups, "no upstream connection of ferry's found"
        for lp in ups:
            assert nodelay_of(f.pid, lp, up_port) == 1, "upstream socket without TCP_NODELAY"
    finally:
        c.close()


def test_client_nodelay_http(h):
    check_client_nodelay(h, "http")


def test_client_nodelay_tcp(h):
    check_client_nodelay(h, "tcp")


if __name__ == "__main__":
    harness.main(globals())
