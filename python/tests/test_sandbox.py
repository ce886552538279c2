"""--read-only-fs (Landlock): the rights asked for per ABI version, and the restriction itself in a
child process (it cannot be undone, so never in the test process)."""

import os
import subprocess
import sys

import pytest

from dspex_worker import sandbox
from workerclient import PYTHON_DIR, WorkerClient, worker_env


def test_only_rights_the_running_abi_knows_are_handled():
    abi1 = sandbox.write_rights(1)
    assert abi1 & sandbox.ACCESS_FS_REFER == 0 and abi1 & sandbox.ACCESS_FS_TRUNCATE == 0
    assert sandbox.write_rights(2) == abi1 | sandbox.ACCESS_FS_REFER
    assert sandbox.write_rights(3) == abi1 | sandbox.ACCESS_FS_REFER | sandbox.ACCESS_FS_TRUNCATE
    # Later ABIs add no right that changes the file system (IOCTL_DEV is not a write); reads,
    # listing and execution (bits 0, 2, 3) are never handled.
    assert sandbox.write_rights(7) == sandbox.write_rights(3)
    assert sandbox.write_rights(7) & 0b1101 == 0


def _landlock():
    try:
        return sandbox.landlock_abi()
    except sandbox.IsolationError:
        return None


@pytest.mark.skipif(_landlock() is None, reason="this kernel has no Landlock")
def test_a_restricted_child_writes_only_beneath_its_writable_paths(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "old.txt").write_text("old")
    script = f"""
import os, sys
sys.path.insert(0, {PYTHON_DIR!r})
from dspex_worker import sandbox
sandbox.restrict_filesystem([{str(inside)!r}])
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return type(e).__name__
print(attempt(lambda: open({str(inside / 'a')!r}, 'w').write('x')))
print(attempt(lambda: os.mkdir({str(inside / 'd')!r})))
print(attempt(lambda: open({str(outside / 'b')!r}, 'w')))
print(attempt(lambda: open({str(outside / 'old.txt')!r}, 'a')))
print(attempt(lambda: os.remove({str(outside / 'old.txt')!r})))
print(attempt(lambda: os.rename({str(outside / 'old.txt')!r}, {str(inside / 'moved')!r})))
print(attempt(lambda: open({str(outside / 'old.txt')!r}).read()))
print(attempt(lambda: open('/dev/null', 'w').write('x')))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "ok", "PermissionError", "PermissionError", "PermissionError",
                                  "PermissionError", "ok", "ok"]
    assert (outside / "old.txt").read_text() == "old"


@pytest.mark.skipif(_landlock() is None, reason="this kernel has no Landlock")
def test_the_check_exits_0_and_a_missing_writable_path_exits_4(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "dspex_worker", "--check-read-only-fs", "--writable", str(tmp_path)],
                        env=worker_env(), cwd=PYTHON_DIR, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "dspex_worker", "--check-read-only-fs",
                          "--writable", str(tmp_path / "missing")],
                         env=worker_env(), cwd=PYTHON_DIR, capture_output=True, timeout=60)
    assert bad.returncode == sandbox.EXIT_NO_FS
    assert b"missing" in bad.stderr


@pytest.mark.skipif(_landlock() is None, reason="this kernel has no Landlock")
def test_a_read_only_worker_still_answers(tmp_path):
    client = WorkerClient("--read-only-fs", "--writable", str(tmp_path), env={"TMPDIR": str(tmp_path)})
    try:
        assert client.call("ping")["pong"] is True
    finally:
        client.close()
