"""`python -m dspex_worker [--eager-import] [--memory-mb N] [--cpu-seconds N] [--no-network]
[--read-only-fs [--writable PATH]...] [--fork-from NAME]`: one bridge worker process;
`python -m dspex_worker --fork-server NAME [...]`: a fork server (see forkserver.py).

Start-up order matters: stdout is taken for frames before anything can print, the parent-death
signal is set before the parent check (so a parent dying in between is seen by one or the other),
the memory limit before DSPy is imported, and `ready` goes out last.
"""

import os
import sys


def take_stdio():
    """Keep the pool's stdin and stdout for frames; point fds 0/1 and sys.stdin/stdout elsewhere.

    fd 1 becomes a copy of stderr, so DSPy, user code and C extensions that print (even to the file
    descriptor directly) land in the log, never inside a frame. fd 0 becomes /dev/null, so nothing
    else can consume frame bytes.
    """
    sys.stdout.flush()
    out_fd = os.dup(1)
    in_fd = os.dup(0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return in_fd, out_fd


def set_parent_death_signal():
    """prctl(PR_SET_PDEATHSIG, SIGKILL) on Linux; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return True


def parent_is_gone():
    """The parent died before the death signal was armed: re-parented to init, or not the expected pid.

    DSPEX_PARENT_PID, when the pool sets it, is authoritative (it also covers a pool that is itself pid 1
    and a sub-reaper adopting the worker); without it a parent pid of 1 means the parent is gone.
    """
    ppid = os.getppid()
    expected = os.environ.get("DSPEX_PARENT_PID")
    if expected:
        try:
            return ppid != int(expected)
        except ValueError:
            pass
    return ppid == 1


def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dspex_worker", description="A dspex bridge worker.")
    parser.add_argument("--eager-import", action="store_true", help="import dspy before the ready frame")
    parser.add_argument("--memory-mb", type=int, default=None, help="RLIMIT_AS in MiB")
    parser.add_argument("--cpu-seconds", type=int, default=None,
                        help="CPU seconds each operation may use (RLIMIT_CPU, armed per operation)")
    parser.add_argument("--no-network", action="store_true",
                        help="run in new user and network namespaces (no network); exit 3 if refused")
    parser.add_argument("--check-no-network", action="store_true",
                        help="only try the --no-network isolation: exit 0, or 3 with the reason on stderr")
    parser.add_argument("--read-only-fs", action="store_true",
                        help="Landlock: the file system read-only but for --writable paths; exit 4 if refused")
    parser.add_argument("--writable", metavar="PATH", action="append", default=[],
                        help="a path that stays writable under --read-only-fs (repeatable)")
    parser.add_argument("--check-read-only-fs", action="store_true",
                        help="only try the --read-only-fs restriction: exit 0, or 4 with the reason on stderr")
    parser.add_argument("--fork-from", metavar="NAME", default=None,
                        help="have the fork server NAME fork this worker (falls back to a normal start)")
    parser.add_argument("--fork-server", metavar="NAME", default=None,
                        help="run a fork server named NAME instead of a worker")
    return parser.parse_args(argv)


def main(argv=None):
    in_fd, out_fd = take_stdio()
    import logging

    logging.basicConfig(stream=sys.stderr, level=os.environ.get("DSPEX_WORKER_LOG", "INFO").upper(),
                        format=f"dspex_worker[{os.getpid()}] %(levelname)s %(message)s")
    log = logging.getLogger("dspex_worker")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse printed the usage to stderr (fd 1 is stderr now)
        os._exit(exc.code if isinstance(exc.code, int) else 2)

    if not set_parent_death_signal():
        log.warning("no parent-death signal on this platform; relying on stdin EOF")
    if parent_is_gone():
        log.error("the parent process is already gone: exiting")
        os._exit(0)

    if args.check_no_network:
        from . import sandbox

        sandbox.isolate_network_or_exit(log)
        os._exit(0)

    if args.check_read_only_fs:
        from . import sandbox

        abi = sandbox.restrict_filesystem_or_exit(log, args.writable)
        log.debug("read_only_fs: Landlock ABI %d", abi)
        os._exit(0)

    if args.fork_server is not None:
        from . import forkserver

        forkserver.serve(args.fork_server, in_fd, out_fd, memory_mb=args.memory_mb,
                         cpu_seconds=args.cpu_seconds, no_network=args.no_network,
                         writable=args.writable if args.read_only_fs else None)
    if args.fork_from is not None:
        from . import forkserver

        # Returns only when the server could not take over (then this process becomes the worker).
        forkserver.run_stub(args.fork_from, in_fd, out_fd)

    if args.no_network:
        # Here, not in a fork stub: the stub only relays descriptors (and must reach the fork
        # server's abstract socket, which a network namespace would hide); its forked child
        # isolates itself. A stub the server refused falls through to here.
        from . import sandbox

        sandbox.isolate_network_or_exit(log)
        # Entering a user namespace changes the credentials, which may clear the parent-death
        # signal: set it again.
        set_parent_death_signal()

    if args.memory_mb is not None:
        import resource

        limit = args.memory_mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError) as exc:
            log.error("cannot set RLIMIT_AS to %d MiB: %s", args.memory_mb, exc)
            os._exit(2)

    if args.read_only_fs:
        # Before any operation (and the import of DSPy, which is user code's too): the ruleset
        # binds this process and whatever it starts.
        from . import sandbox

        sandbox.restrict_filesystem_or_exit(log, args.writable)

    from . import ops
    from .worker import Worker, check_cpu_limit

    if args.cpu_seconds is not None and not check_cpu_limit(args.cpu_seconds):
        os._exit(2)
    if args.eager_import or args.cpu_seconds is not None:
        # With a CPU limit, DSPy's import (a second or more of CPU) must not count against the
        # first operation's budget.
        ops.import_dspy()
    reader = open(in_fd, "rb", buffering=1 << 16)  # noqa: SIM115
    worker = Worker(reader, out_fd, dspy_version=ops.dspy_version(), cpu_seconds=args.cpu_seconds)
    worker.run()


if __name__ == "__main__":
    main()
