//! The pool's fork server ([`PoolBuilder::fork_server`](super::PoolBuilder::fork_server)): one
//! Python process that imports DSPy once and forks each worker from itself, so a replacement
//! costs one small Python start and a `fork`, not one `import dspy` (about a second of CPU).
//!
//! The process is `python -m dspex_worker --fork-server NAME`, a child of the pool in its own
//! process group; it writes `ready` on stdout once DSPy is imported and it listens, and exits on
//! end of file on stdin (or with the pool's process, by its parent-death signal). Each worker
//! the pool spawns is then a stub, `python -m dspex_worker --fork-from NAME`, whose stdio the
//! server's forked child takes over (see `python/dspex_worker/forkserver.py`); the stub is the
//! process the pool watches, signals and reports. A stub that cannot reach the server starts a
//! worker of its own, so a dead fork server slows restarts down but breaks nothing.

use super::error::{BridgeError, WorkerRef};
use super::worker::{WorkerConfig, command, forward_stderr, signal_group, take_pipes};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin};

/// A running fork server.
pub(crate) struct ForkServer {
    name: String,
    pid: u32,
    /// Closed (dropped) to make the server exit.
    stdin: Mutex<Option<ChildStdin>>,
    /// Killed on drop.
    child: tokio::sync::Mutex<Option<Child>>,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish()
    }
}

/// A name no other fork server on this machine uses (the socket lives in the abstract
/// namespace, shared by every process in the network namespace).
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl ForkServer {
    /// Starts `config.program` with `base_args` (`-m dspex_worker`) and `--fork-server NAME`
    /// (plus `--memory-mb`, `--cpu-seconds`, `--no-network` and `sandbox_args` such as
    /// `--read-only-fs`, applied to the forked workers), and waits for its `ready` line within
    /// the start timeout.
    pub(crate) async fn start(
        config: &WorkerConfig,
        base_args: &[OsString],
        memory_mb: Option<u64>,
        cpu_seconds: Option<u64>,
        no_network: bool,
        sandbox_args: &[OsString],
    ) -> Result<ForkServer, BridgeError> {
        let name = unique_name();
        let mut args: Vec<OsString> = base_args.to_vec();
        args.push("--fork-server".into());
        args.push(name.clone().into());
        if let Some(mb) = memory_mb {
            args.push("--memory-mb".into());
            args.push(mb.to_string().into());
        }
        if let Some(seconds) = cpu_seconds {
            args.push("--cpu-seconds".into());
            args.push(seconds.to_string().into());
        }
        if no_network {
            args.push("--no-network".into());
        }
        args.extend(sandbox_args.iter().cloned());
        let program = config.program.to_string_lossy().into_owned();
        let mut child = command(config, &args)
            .spawn()
            .map_err(|e| BridgeError::Spawn {
                program: program.clone(),
                message: format!("cannot start the fork server: {e}"),
            })?;
        let pid = child.id().unwrap_or(0);
        let wref = WorkerRef { id: 0, pid };
        let (stdin, stdout, stderr) = take_pipes(&mut child, &program, "the fork server's")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(forward_stderr(stderr, tail.clone(), wref));
        let mut line = String::new();
        let read = tokio::time::timeout(
            config.start_timeout,
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        if !matches!(read, Ok(Ok(_)) if line == "ready\n") {
            let message = match read {
                Err(_) => format!(
                    "the fork server sent no `ready` within {:?} (start timeout)",
                    config.start_timeout
                ),
                Ok(Err(e)) => format!("cannot read the fork server's stdout: {e}"),
                Ok(Ok(_)) => format!("the fork server said {line:?} instead of `ready`"),
            };
            signal_group(pid, rustix::process::Signal::KILL);
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            let stderr = tail
                .lock()
                .map(|t| t.iter().cloned().collect())
                .unwrap_or_default();
            return Err(BridgeError::Handshake {
                worker: wref,
                message,
                stderr,
            });
        }
        tracing::info!(target: "dspex::bridge", pid, name = %name, "fork server ready");
        Ok(ForkServer {
            name,
            pid,
            stdin: Mutex::new(Some(stdin)),
            child: tokio::sync::Mutex::new(Some(child)),
        })
    }

    /// The name stubs connect to (`--fork-from NAME`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server: end of file on its stdin, then SIGKILL to its process group after
    /// `grace`. Workers it forked live on with their stubs (they are in the stubs' groups).
    pub(crate) async fn stop(&self, grace: Duration) {
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        let mut child = self.child.lock().await;
        let Some(mut c) = child.take() else {
            return;
        };
        if tokio::time::timeout(grace, c.wait()).await.is_err() {
            tracing::warn!(target: "dspex::bridge", pid = self.pid, "the fork server ignored EOF: SIGKILL");
            signal_group(self.pid, rustix::process::Signal::KILL);
            let _ = c.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
    }
}
