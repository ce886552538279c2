"""`--no-network`: the worker in a network namespace of its own, with only a loopback interface that
is down, so that code it runs cannot reach any network (nor the host's loopback services).

An unprivileged process may not create a network namespace on its own (CAP_SYS_ADMIN), but it may
create a user namespace and, inside it, a network namespace: `unshare(CLONE_NEWUSER |
CLONE_NEWNET)`. The user namespace maps the worker's own uid and gid to themselves, so files keep
their owners and permissions. It needs a single-threaded process (done before any thread starts)
and a kernel that allows unprivileged user namespaces (`user.max_user_namespaces` > 0; not blocked
by `kernel.unprivileged_userns_clone=0` or an AppArmor/seccomp policy such as Docker's default
profile). Where it is refused, the worker exits with status EXIT_NO_NETWORK before `ready`: it never
runs with the network it was asked not to have.
"""

import ctypes
import ctypes.util
import os
import socket

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

# The exit status of a worker that could not isolate itself (before `ready`).
EXIT_NO_NETWORK = 3


class IsolationError(Exception):
    pass


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def isolate_network():
    """Move this (single-threaded) process into new user and network namespaces; raise IsolationError
    with the reason when the OS refuses, or when a network interface other than loopback is left."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise IsolationError(
            f"unshare(CLONE_NEWUSER | CLONE_NEWNET) failed: {os.strerror(errno)} (errno {errno}); "
            "unprivileged user namespaces are probably disabled (sysctl user.max_user_namespaces, "
            "kernel.unprivileged_userns_clone, or a seccomp/AppArmor profile)"
        )
    try:
        _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
        try:
            _write("/proc/self/setgroups", "deny\n")
        except FileNotFoundError:
            pass
        _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    except OSError as exc:
        raise IsolationError(f"cannot map the worker's uid/gid in its user namespace: {exc}") from exc
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise IsolationError(f"the new network namespace has interfaces {names}, expected only lo")
