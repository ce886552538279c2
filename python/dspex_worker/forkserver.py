"""The fork server: one process that imports DSPy once and forks ready workers from itself.

A worker started the usual way pays for `import dspy` (about a second of CPU on a small machine). With
a fork server, the pool starts `python -m dspex_worker --fork-server NAME` once; each worker the pool
then spawns is a small *stub* (`python -m dspex_worker --fork-from NAME`) that hands its stdin, stdout
and stderr to the server over a Unix socket (abstract namespace, Linux) and waits. The server forks a
child that takes those descriptors, joins the stub's process group and runs the worker loop with DSPy
already imported: a replacement is ready in one Python start and one fork, not one DSPy import.

Lifetimes, so nothing outlives its owner:
- The stub is the process the pool knows (its pid, its exit status, its process group). It exits when
  its forked worker does, with the worker's status (a worker killed by a signal: the stub kills itself
  with the same signal), as the server reports it.
- The forked worker is killed by the server when its stub goes away (the stub's connection closes),
  and, being in the stub's process group, by the pool's group kill; it also exits on end of file on
  stdin, like every worker.
- The server exits on end of file on its stdin (the pool closes it or dies) and has the parent-death
  signal; forked workers outlive it only as long as their stubs.

Messages on a stub's connection are JSON lines: stub → server `{"pid": <stub pid>}` with the three
descriptors attached (SCM_RIGHTS); server → stub `{"pid": <worker pid>}` (or `{"error": "..."}`), then
`{"exit": <status>}` when the worker is reaped (a negative status: killed by that signal).
"""

import json
import logging
import os
import select
import signal
import socket
import sys

log = logging.getLogger("dspex_worker")

# Longest message line either side sends.
_MAX_LINE = 4096


def address(name):
    """The socket address for a server name: the abstract namespace (no file to clean up)."""
    return "\0dspex-forkserver-" + name


def _read_line(sock, buffer):
    """One JSON object line from `sock` (blocking), with `buffer` the bytes already read; None on EOF."""
    while b"\n" not in buffer:
        chunk = sock.recv(_MAX_LINE)
        if not chunk:
            return None, buffer
        buffer += chunk
        if len(buffer) > _MAX_LINE and b"\n" not in buffer:
            raise ValueError("a fork-server message line is too long")
    line, _, rest = buffer.partition(b"\n")
    return json.loads(line), rest


def _send(sock, message):
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
        return True
    except OSError:
        return False


# ---- the stub ------------------------------------------------------------------------------------
def run_stub(name, in_fd, out_fd):
    """Hand stdin/stdout/stderr to the fork server and wait for the forked worker; never returns on
    success. Returns False (nothing was handed over) when the server cannot be reached or refuses, so
    the caller starts a worker the usual way."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address(name))
        socket.send_fds(sock, [json.dumps({"pid": os.getpid()}).encode() + b"\n"], [in_fd, out_fd, 2])
        reply, buffer = _read_line(sock, b"")
    except (OSError, ValueError) as exc:
        log.warning("fork server %r unavailable (%s): starting a worker of my own", name, exc)
        return False
    if not isinstance(reply, dict) or not isinstance(reply.get("pid"), int):
        log.warning("fork server %r refused (%r): starting a worker of my own", name, reply)
        return False
    child = reply["pid"]
    # The worker has the pipes now: the pool must see end of file when *it* closes them.
    for fd in (in_fd, out_fd):
        try:
            os.close(fd)
        except OSError:
            pass
    log.debug("forked worker %d serves this stub", child)
    try:
        message, _ = _read_line(sock, buffer)
    except (OSError, ValueError):
        message = None
    if isinstance(message, dict) and isinstance(message.get("exit"), int):
        status = message["exit"]
        if status < 0:
            sys.stderr.flush()
            os.kill(os.getpid(), -status)  # die of the worker's signal, as the pool expects
            os._exit(128 - status)
        os._exit(status)
    # The server is gone without a word: the worker may still run. Wait for it, then report a failure.
    log.error("fork server %r went away; waiting for worker %d", name, child)
    try:
        pidfd = os.pidfd_open(child)
        select.select([pidfd], [], [])
    except OSError:
        pass
    os._exit(1)


# ---- the server ----------------------------------------------------------------------------------
def _child_main(conn, fds, stub_pid, memory_mb, closing, cpu_seconds=None, no_network=False, writable=None):
    """In the forked child: become a worker on the stub's descriptors. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:
            try:
                os.close(fd)
            except OSError:
                pass
        conn.close()
        in_fd, out_fd, err_fd = fds
        os.dup2(err_fd, 2)
        os.dup2(err_fd, 1)  # prints land in the log, never in a frame
        os.close(err_fd)
        sys.stdout = sys.stderr
        logging.basicConfig(stream=sys.stderr, force=True,
                            level=os.environ.get("DSPEX_WORKER_LOG", "INFO").upper(),
                            format=f"dspex_worker[{os.getpid()}] %(levelname)s %(message)s")
        # The stub's process group (the pool spawns stubs as group leaders): the pool's group kill
        # reaches this process too.
        try:
            os.setpgid(0, os.getpgid(stub_pid))
        except OSError as exc:
            log.warning("cannot join the process group of stub %d: %s", stub_pid, exc)
        if no_network:
            # A forked child has one thread: it may enter new user and network namespaces.
            from .sandbox import isolate_network

            isolate_network()
        if writable is not None:
            # --read-only-fs: each forked worker restricts itself (the server runs no user code).
            from .sandbox import restrict_filesystem

            restrict_filesystem(writable)
        if memory_mb is not None:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from . import ops
        from .worker import Worker

        reader = open(in_fd, "rb", buffering=1 << 16)  # noqa: SIM115
        worker = Worker(reader, out_fd, dspy_version=ops.dspy_version(), cpu_seconds=cpu_seconds)
        worker.run()
    except BaseException as exc:  # noqa: BLE001 - a forked child must never return into the server
        try:
            log.error("forked worker failed to start: %r", exc)
        finally:
            os._exit(70)
    os._exit(0)


def serve(name, in_fd, out_fd, memory_mb=None, cpu_seconds=None, no_network=False, writable=None):
    """Import DSPy, listen on `name`, write `ready` on stdout, and fork workers until end of file on
    stdin. Never returns."""
    from . import ops, worker  # noqa: F401 - imported here so that every child has them

    ops.import_dspy()
    from . import bridge_lm  # noqa: F401 - the bridge LM (imports DSPy's client classes)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address(name))
    listener.listen(128)
    listener.setblocking(False)
    # SIGCHLD only wakes select (through the wakeup fd); children are reaped in the loop.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    os.write(out_fd, b"ready\n")
    log.info("fork server %r ready (dspy %s)", name, ops.dspy_version())

    waiting = {}  # connection fd -> (socket, buffer): stubs that have not asked yet
    children = {}  # worker pid -> its stub's connection
    by_conn = {}  # connection fd -> worker pid
    while True:
        # poll, not select: no limit on descriptor numbers. A closed peer reads as readable.
        poller = select.poll()
        for fd in (in_fd, wake_r, listener.fileno(), *waiting, *by_conn):
            poller.register(fd, select.POLLIN)
        try:
            readable = [fd for fd, _ in poller.poll(1000)]
        except InterruptedError:
            readable = []
        if in_fd in readable:
            try:
                data = os.read(in_fd, 4096)
            except OSError:
                data = b""
            if not data:
                log.info("fork server %r: EOF on stdin, exiting", name)
                os._exit(0)
        if wake_r in readable:
            try:
                os.read(wake_r, 4096)
            except OSError:
                pass
        if listener.fileno() in readable:
            while True:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(True)
                waiting[conn.fileno()] = conn
        # Decided before any fork below adds connections (whose fds were readable as `waiting`).
        stubs_gone = [fd for fd in readable if fd in by_conn]
        for fd in [fd for fd in readable if fd in waiting]:
            conn = waiting.pop(fd)
            try:
                data, received, _, _ = socket.recv_fds(conn, _MAX_LINE, 3)
                request = json.loads(data) if data else None
                stub_pid = request.get("pid") if isinstance(request, dict) else None
            except (OSError, ValueError):
                received, stub_pid = [], None
            if not isinstance(stub_pid, int) or len(received) != 3:
                for r in received:
                    os.close(r)
                _send(conn, {"error": "expected {\"pid\": <stub pid>} with three descriptors"})
                conn.close()
                continue
            closing = [in_fd, out_fd, wake_r, wake_w, listener.fileno(), *waiting, *by_conn]
            pid = os.fork()
            if pid == 0:
                _child_main(conn, received, stub_pid, memory_mb, closing, cpu_seconds, no_network, writable)
            for r in received:
                os.close(r)
            if _send(conn, {"pid": pid}):
                children[pid] = conn
                by_conn[conn.fileno()] = pid
            else:  # the stub is gone already
                _kill(pid)
                children[pid] = None
                conn.close()
        # A stub's connection readable after the fork: the stub is gone; so goes its worker.
        for fd in stubs_gone:
            pid = by_conn.pop(fd, None)
            if pid is None:
                continue
            conn = children.get(pid)
            if conn is not None:
                try:
                    gone = not conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if not gone:
                    by_conn[fd] = pid  # a stray byte: keep watching
                    continue
                children[pid] = None
                conn.close()
            _kill(pid)
        _reap(children, by_conn)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap(children, by_conn):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        by_conn.pop(conn.fileno(), None)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)
        _send(conn, {"exit": code})
        conn.close()
