"""The worker's sandbox: `--no-network` (below) and `--read-only-fs` (Landlock, further below).

`--no-network`: the worker in a network namespace of its own, with only a loopback interface that
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


# ---- --read-only-fs: Landlock ----------------------------------------------------------------------
# The file system seen read-only, but for named paths: a Landlock ruleset (Linux 5.13+, when the
# kernel is built with it and `landlock` is in the active LSMs) that handles every right that
# changes the file system and grants them beneath the writable paths only. Reading, listing and
# executing stay allowed everywhere (they are not handled). Applied with the unprivileged
# landlock_restrict_self after prctl(PR_SET_NO_NEW_PRIVS); it binds this process and every child,
# and cannot be undone.

SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Access rights to the file system, by the ABI version that introduced them.
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13  # ABI 2: link or rename a file into another directory
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3

_WRITE_ABI1 = (ACCESS_FS_WRITE_FILE | ACCESS_FS_REMOVE_DIR | ACCESS_FS_REMOVE_FILE | ACCESS_FS_MAKE_CHAR
               | ACCESS_FS_MAKE_DIR | ACCESS_FS_MAKE_REG | ACCESS_FS_MAKE_SOCK | ACCESS_FS_MAKE_FIFO
               | ACCESS_FS_MAKE_BLOCK | ACCESS_FS_MAKE_SYM)
# Rights that apply to a file (a rule on a file may grant only these).
_FILE_RIGHTS = ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE

# Writable without being named: writing to /dev/null is writing nowhere (subprocess.DEVNULL, logging).
DEFAULT_WRITABLE = ("/dev/null",)

# The exit status of a worker that could not make its file system read-only (before `ready`).
EXIT_NO_FS = 4


def write_rights(abi):
    """The rights the ruleset handles under Landlock ABI `abi`: every right that changes the file
    system that this ABI knows (asking for a right the kernel does not know is EINVAL)."""
    rights = _WRITE_ABI1
    if abi >= 2:
        rights |= ACCESS_FS_REFER
    if abi >= 3:
        rights |= ACCESS_FS_TRUNCATE
    return rights


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


class _RulesetAttr(ctypes.Structure):
    # Only the first member: the kernel takes a shorter struct (handled_access_net and scoped, of
    # later ABIs, stay 0, so the network and scopes are not restricted here).
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in <linux/landlock.h>
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi():
    """The kernel's Landlock ABI version (1 and up); raise IsolationError when there is none."""
    if not os.uname().sysname == "Linux":
        raise IsolationError("Landlock is a Linux feature")
    libc = _libc()
    abi = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                       ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        errno = ctypes.get_errno()
        reason = {
            38: "the kernel has no Landlock (Linux 5.13 or later, built with CONFIG_SECURITY_LANDLOCK)",
            95: "Landlock is not enabled (add `landlock` to the kernel's `lsm=` boot parameter)",
            1: "a seccomp filter refuses the Landlock system calls",
        }.get(errno, "Landlock is unavailable")
        raise IsolationError(f"landlock_create_ruleset: {os.strerror(errno)} (errno {errno}): {reason}")
    return abi


def restrict_filesystem(writable):
    """Make the file system read-only for this process and its children, except beneath the paths
    in `writable` (and DEFAULT_WRITABLE). Returns the ABI version used. Raises IsolationError with
    the reason when the kernel cannot, or a writable path cannot be opened."""
    abi = landlock_abi()
    libc = _libc()
    handled = write_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled)
    ruleset = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                           ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        errno = ctypes.get_errno()
        raise IsolationError(f"landlock_create_ruleset: {os.strerror(errno)} (errno {errno})")
    try:
        for path in [*DEFAULT_WRITABLE, *writable]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                if path in DEFAULT_WRITABLE:
                    continue
                raise IsolationError(f"cannot open the writable path {path!r}: {exc}") from exc
            try:
                import stat

                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                rule = _PathBeneathAttr(allowed_access=handled if is_dir else handled & _FILE_RIGHTS,
                                        parent_fd=fd)
                if libc.syscall(ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ctypes.c_long(ruleset),
                                ctypes.c_long(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule),
                                ctypes.c_uint32(0)) != 0:
                    errno = ctypes.get_errno()
                    raise IsolationError(f"landlock_add_rule for {path!r}: {os.strerror(errno)} (errno {errno})")
            finally:
                os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise IsolationError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(errno)} (errno {errno})")
        if libc.syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_long(ruleset), ctypes.c_uint32(0)) != 0:
            errno = ctypes.get_errno()
            raise IsolationError(f"landlock_restrict_self: {os.strerror(errno)} (errno {errno})")
    finally:
        os.close(ruleset)
    return abi


def isolate_network_or_exit(log):
    """`isolate_network()`, or exit with EXIT_NO_NETWORK (the pool reads the status) after logging why."""
    try:
        isolate_network()
    except IsolationError as exc:
        log.error("cannot isolate the network: %s", exc)
        os._exit(EXIT_NO_NETWORK)


def restrict_filesystem_or_exit(log, writable):
    """`restrict_filesystem(writable)` (its Landlock ABI), or exit with EXIT_NO_FS after logging why."""
    try:
        return restrict_filesystem(writable)
    except IsolationError as exc:
        log.error("cannot make the file system read-only: %s", exc)
        os._exit(EXIT_NO_FS)
