//! [`PoolBuilder`]: the pool's settings (workers, timeouts, heartbeats, restart backoff and
//! breaker, retries, the fork server) and [`PoolBuilder::build`].

use super::*;
use crate::bridge::protocol::DEFAULT_MSGPACK_THRESHOLD;

/// The restart breaker: more than `max_restarts` restarts within `window` pause restarts for
/// `cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBreaker {
    /// Restarts allowed within the window.
    pub max_restarts: usize,
    /// The window.
    pub window: Duration,
    /// How long restarts pause once the breaker opens.
    pub cooldown: Duration,
}

impl Default for RestartBreaker {
    fn default() -> Self {
        RestartBreaker {
            max_restarts: 20,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Configures and starts a [`Pool`]. Every setting has a default; see each method.
#[derive(Clone)]
pub struct PoolBuilder {
    pub(super) python: OsString,
    pub(super) worker_args: Vec<OsString>,
    pub(super) eager_import: bool,
    pub(super) memory_mb: Option<u64>,
    pub(super) cpu_seconds: Option<u64>,
    pub(super) no_network: bool,
    pub(super) extra_args: Vec<OsString>,
    pub(super) env_allow: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) thread_cap: u32,
    pub(super) current_dir: Option<PathBuf>,
    pub(super) min_workers: usize,
    pub(super) max_workers: usize,
    pub(super) queue_bound: usize,
    pub(super) checkout_timeout: Duration,
    pub(super) call_timeout: Duration,
    pub(super) start_timeout: Duration,
    pub(super) heartbeat_interval: Option<Duration>,
    pub(super) heartbeat_timeout: Option<Duration>,
    pub(super) max_missed_heartbeats: u32,
    pub(super) restart_backoff: (Duration, Duration),
    pub(super) stable_after: Duration,
    pub(super) breaker: RestartBreaker,
    pub(super) max_retries: u32,
    pub(super) retry_backoff: (Duration, Duration),
    pub(super) call_breaker: Option<CallBreaker>,
    pub(super) shutdown_grace: Duration,
    pub(super) term_grace: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) init: Vec<Op>,
    pub(super) lm: Option<Arc<dyn LanguageModel>>,
    pub(super) kill_process_group: bool,
    pub(super) fork_server: bool,
    pub(super) msgpack_threshold: Option<usize>,
    pub(super) read_only_fs: bool,
    pub(super) writable_paths: Vec<PathBuf>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("python", &self.python)
            .field("worker_args", &self.worker_args)
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .finish_non_exhaustive()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            python: "python3".into(),
            worker_args: vec!["-m".into(), "dspex_worker".into()],
            eager_import: false,
            memory_mb: None,
            cpu_seconds: None,
            no_network: false,
            extra_args: Vec::new(),
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            thread_cap: 1,
            current_dir: None,
            min_workers: 2,
            max_workers: 2,
            queue_bound: 256,
            checkout_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(300),
            start_timeout: Duration::from_secs(60),
            heartbeat_interval: Some(Duration::from_secs(5)),
            heartbeat_timeout: None,
            max_missed_heartbeats: 3,
            restart_backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            stable_after: Duration::from_secs(10),
            breaker: RestartBreaker::default(),
            max_retries: 2,
            retry_backoff: (Duration::from_millis(50), Duration::from_secs(2)),
            call_breaker: Some(CallBreaker::default()),
            shutdown_grace: Duration::from_secs(5),
            term_grace: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            init: Vec::new(),
            lm: None,
            kill_process_group: true,
            fork_server: false,
            msgpack_threshold: Some(DEFAULT_MSGPACK_THRESHOLD),
            read_only_fs: false,
            writable_paths: Vec::new(),
        }
    }
}

impl PoolBuilder {
    /// The Python interpreter (default `python3`; point it at the venv's `bin/python`).
    #[must_use]
    pub fn python(mut self, path: impl Into<OsString>) -> Self {
        self.python = path.into();
        self
    }

    /// What the interpreter runs, replacing `-m dspex_worker` (a script path, say, for a test
    /// worker). The flags below are appended after these.
    #[must_use]
    pub fn worker_args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.worker_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// `--eager-import`: `import dspy` before `ready` (slower start, no delay on the first call).
    #[must_use]
    pub fn eager_import(mut self, eager: bool) -> Self {
        self.eager_import = eager;
        self
    }

    /// `--memory-mb N`: the worker's address space limit (RLIMIT_AS), set by the worker.
    #[must_use]
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self
    }

    /// `--cpu-seconds N`: the CPU time each operation may use in its worker (default: no limit).
    ///
    /// The worker sets its soft RLIMIT_CPU to the CPU time it has used so far plus `n` before
    /// each operation (all its threads count, and the LM calls it waits on do not: waiting costs
    /// no CPU). An operation past it gets SIGXCPU from the kernel, which kills the worker; the
    /// pool replaces it and the call fails with [`BridgeError::CpuLimitExceeded`] (not retried:
    /// the call spent the budget, and would spend it again). It is a per-operation budget rather
    /// than RLIMIT_CPU's lifetime total, so a long-lived worker is not killed by the sum of many
    /// short calls. With a limit the worker imports DSPy before `ready` (as with
    /// [`eager_import`](Self::eager_import)), so the import does not count against the first
    /// operation; it also sets RLIMIT_CORE to 0 (SIGXCPU would dump core). Needs an unlimited
    /// hard RLIMIT_CPU in the pool's process (the usual case): else the worker fails its start.
    /// Python code could catch or ignore SIGXCPU: this bounds runaway computation, it is not a
    /// defence against hostile code.
    #[must_use]
    pub fn cpu_seconds(mut self, n: u64) -> Self {
        self.cpu_seconds = Some(n.max(1));
        self
    }

    /// `--no-network`: each worker runs in a network namespace of its own, with only a loopback
    /// interface (down), so that the code it runs reaches no network — neither the internet
    /// nor services on the host's loopback (default off). DSPy's LM calls still work in
    /// [`bridge` LM mode](crate::bridge::protocol::LmConfig::bridge): they go to the pool over
    /// the worker's pipes; `direct` mode cannot reach its provider.
    ///
    /// The worker enters new user and network namespaces (`unshare(CLONE_NEWUSER |
    /// CLONE_NEWNET)`, its uid and gid mapped to themselves) before it starts any thread. This
    /// needs Linux with unprivileged user namespaces allowed (`user.max_user_namespaces` > 0, no
    /// `kernel.unprivileged_userns_clone = 0`, no seccomp/AppArmor profile refusing `unshare`,
    /// as Docker's default one does); root needs nothing more. [`build`](Self::build) first
    /// runs the worker once with `--check-no-network`: where isolation is refused it fails with
    /// [`BridgeError::NetworkIsolation`], and no worker ever runs with the network. With the
    /// [`fork_server`](Self::fork_server), each forked worker isolates itself (the server and
    /// the stubs keep the network namespace their abstract socket lives in).
    #[must_use]
    pub fn no_network(mut self, on: bool) -> Self {
        self.no_network = on;
        self
    }

    /// One more argument for the worker, after the others.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Lets the worker inherit this variable of the pool's environment (besides
    /// [`DEFAULT_ENV_ALLOW`]).
    #[must_use]
    pub fn env_allow(mut self, name: impl Into<String>) -> Self {
        self.env_allow.push(name.into());
        self
    }

    /// Sets a variable in the worker's environment.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Threads for numeric libraries (`OMP_NUM_THREADS` and friends; default 1).
    #[must_use]
    pub fn thread_cap(mut self, threads: u32) -> Self {
        self.thread_cap = threads.max(1);
        self
    }

    /// The workers' working directory (default: the pool's).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Workers kept running (default 2); all are started at once by [`build`](Self::build).
    /// Raises `max_workers` to match if needed.
    #[must_use]
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n.max(1);
        self.max_workers = self.max_workers.max(self.min_workers);
        self
    }

    /// Most workers: above `min_workers`, extra workers start when calls queue, and stop after
    /// [`idle_timeout`](Self::idle_timeout) idle (default: `min_workers`).
    #[must_use]
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n.max(1);
        self.min_workers = self.min_workers.min(self.max_workers);
        self
    }

    /// Exactly `n` workers.
    #[must_use]
    pub fn workers(self, n: usize) -> Self {
        self.min_workers(n).max_workers(n)
    }

    /// Calls that may wait for a worker (default 256); one more gets
    /// [`BridgeError::PoolSaturated`] at once.
    #[must_use]
    pub fn queue_bound(mut self, n: usize) -> Self {
        self.queue_bound = n;
        self
    }

    /// How long a call waits for a worker (default 30 s) before
    /// [`BridgeError::CheckoutTimeout`].
    #[must_use]
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// How long a call may run on its worker (default 300 s); past it the worker is killed and
    /// replaced, and the caller gets [`BridgeError::Timeout`]. Per call:
    /// [`RequestOptions::timeout`].
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a worker may take to send `ready` and run the init operations (default 60 s).
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Ping every `interval` (default 5 s); `None` turns heartbeats off.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a ping may take before it counts as missed (default: the interval).
    #[must_use]
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Missed pings in a row after which the worker is killed and replaced (default 3).
    #[must_use]
    pub fn max_missed_heartbeats(mut self, n: u32) -> Self {
        self.max_missed_heartbeats = n.max(1);
        self
    }

    /// The delay before a replacement starts: `base`, doubled for each consecutive failure
    /// (failed starts, and workers dying within [`stable_after`](Self::stable_after) of their
    /// start), up to `max` (default 50 ms … 5 s).
    #[must_use]
    pub fn restart_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.restart_backoff = (base, max.max(base));
        self
    }

    /// A worker that lived this long resets the backoff when it dies (default 10 s).
    #[must_use]
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }

    /// The restart breaker (default: 20 restarts per 60 s, then a 30 s pause).
    #[must_use]
    pub fn restart_breaker(mut self, breaker: RestartBreaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// Retries of an idempotent call on another worker after its worker crashed (default 2),
    /// each after a backoff ([`retry_backoff`](Self::retry_backoff)).
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The backoff before each retry of a call after its worker crashed: exponential with full
    /// jitter, a delay drawn uniformly from `[0, min(cap, base · 2^(retry-1))]` (default
    /// 50 ms … 2 s), so calls that lost their workers together do not all land on the
    /// replacements at once. The call's timeout ([`call_timeout`](Self::call_timeout) or
    /// [`RequestOptions::timeout`]) bounds the whole call, retries and backoff included: a retry
    /// whose backoff would end past it is not made (the crash is returned), and each attempt gets
    /// only the time left.
    #[must_use]
    pub fn retry_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.retry_backoff = (base, cap.max(base));
        self
    }

    /// The breaker on the pool's call error rate (default on, [`CallBreaker::default`]: more
    /// than 50 % of at least 20 of the last 100 calls within 60 s failed for pool reasons →
    /// calls fail fast with [`BridgeError::CallBreakerOpen`] for 10 s, then one probe call).
    /// `None` turns it off. Its state is in [`PoolStats::call_breaker`]; see [`CallBreaker`] for
    /// which errors count.
    #[must_use]
    pub fn call_breaker(mut self, breaker: Option<CallBreaker>) -> Self {
        self.call_breaker = breaker;
        self
    }

    /// How long [`Pool::shutdown`] waits for running calls and for the workers to exit after
    /// the `shutdown` operation (default 5 s), before SIGTERM.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a worker has after SIGTERM before SIGKILL (default 2 s).
    #[must_use]
    pub fn term_grace(mut self, grace: Duration) -> Self {
        self.term_grace = grace;
        self
    }

    /// How long a worker above `min_workers` may stay idle before it is stopped (default 60 s).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// An operation every worker runs after `ready` and before its first call (in order), such
    /// as `configure`. A worker whose init fails is replaced.
    #[must_use]
    pub fn init(mut self, op: Op) -> Self {
        self.init.push(op);
        self
    }

    /// The LM that answers the workers' `lm_call`s (default: the LM of
    /// [`Settings::current`](crate::settings::Settings::current) in the calling task).
    #[must_use]
    pub fn lm(mut self, lm: Arc<dyn LanguageModel>) -> Self {
        self.lm = Some(lm);
        self
    }

    /// Signal a worker's whole process group (with `kill(1)`) when it is killed or terminated,
    /// so that processes it started die too (default on).
    #[must_use]
    pub fn kill_process_group(mut self, on: bool) -> Self {
        self.kill_process_group = on;
        self
    }

    /// Start workers by forking them from a fork server (default off): one extra process that
    /// imports DSPy once (`python -m dspex_worker --fork-server NAME`, started by
    /// [`build`](Self::build)); each worker is then a small stub process whose stdio a child
    /// forked from the server takes over. A replacement worker costs one Python start and a
    /// `fork` instead of one `import dspy` (about a second of CPU), and arrives with DSPy
    /// imported. The stub is the worker the pool sees (its pid, exit status and process group,
    /// which the forked child joins); killing it kills the child. If the server dies, stubs
    /// start workers the usual way. The server stops with [`Pool::shutdown`] (or the pool's
    /// last handle); [`Pool::fork_server_pid`] names it. Linux only (abstract Unix sockets).
    #[must_use]
    pub fn fork_server(mut self, on: bool) -> Self {
        self.fork_server = on;
        self
    }

    /// Large frames as MessagePack (default on, above
    /// [`DEFAULT_MSGPACK_THRESHOLD`] = 64 KiB; `None` turns it off): a message whose JSON would
    /// be over `threshold` bytes goes to the worker as MessagePack instead, and the worker does
    /// the same for its answers and LM calls (measuring its MessagePack encoding, which it
    /// builds first). Negotiated per worker: its `ready` announces the encodings it reads, the
    /// pool answers with the threshold, and a worker that does not announce MessagePack (an
    /// older `dspex_worker`, or one without the `msgpack` package) keeps sending and getting
    /// JSON only. The frames' length word tells the encodings apart
    /// ([`MSGPACK_FLAG`](crate::bridge::protocol::MSGPACK_FLAG)). What is negotiated shows in
    /// [`WorkerInfo::msgpack_threshold`](crate::bridge::WorkerInfo::msgpack_threshold).
    ///
    /// It saves the JSON escaping and parsing of large text (a long document, a data URI of an
    /// image) on both sides; messages carry JSON values, so bytes still travel as text (an
    /// image's base64), not as MessagePack `bin`. `BENCHMARKS.md` has the figures of a 1 MiB
    /// round trip.
    #[must_use]
    pub fn msgpack_threshold(mut self, threshold: Option<usize>) -> Self {
        self.msgpack_threshold = threshold;
        self
    }

    /// `--read-only-fs`: each worker sees the file system read-only, but for the paths given to
    /// [`writable_path`](Self::writable_path) and its own temporary directory (default off).
    ///
    /// The worker applies a Landlock ruleset to itself before it runs any operation (with the
    /// [`fork_server`](Self::fork_server), each forked worker does, after the fork): creating,
    /// writing, truncating, renaming, linking or removing files and directories fails with
    /// `PermissionError` (EACCES) outside the writable paths, for the worker and every process it
    /// starts; reading, listing and executing are unchanged. It cannot be undone from inside.
    /// Writable besides the named paths:
    /// - a temporary directory the pool creates for its workers (under the pool's temp dir,
    ///   removed when the pool is dropped), which the workers get as `TMPDIR` (Python's
    ///   `tempfile` uses it) and, unless set with [`env`](Self::env), as `DSPY_CACHEDIR`: DSPy
    ///   opens its on-disk response cache (`~/.dspy_cache` otherwise) when it is imported, and
    ///   a direct-mode LM writes to it;
    /// - `/dev/null`.
    ///
    /// The ruleset asks for every such right the kernel's Landlock ABI knows: on ABI 1 moving or
    /// linking a file into another directory is refused everywhere (even between writable
    /// directories), and truncating by path (`truncate(2)`) is restricted only from ABI 3 on
    /// (Linux 6.2); opening a file for writing is restricted on every ABI. It combines with
    /// [`no_network`](Self::no_network). Python's own `.pyc` writes fail silently (it then
    /// runs from source). It needs Landlock
    /// (Linux 5.13+, `landlock` among the active LSMs); [`build`](Self::build) runs the worker
    /// once with `--check-read-only-fs` and fails with [`BridgeError::FilesystemIsolation`] where
    /// the kernel cannot, or when a writable path does not exist.
    #[must_use]
    pub fn read_only_fs(mut self, on: bool) -> Self {
        self.read_only_fs = on;
        self
    }

    /// A path that stays writable under [`read_only_fs`](Self::read_only_fs) (repeatable): a
    /// directory (writable beneath, recursively) or a file (writable and truncatable). It must
    /// exist when the pool starts. Without `read_only_fs` it has no effect.
    #[must_use]
    pub fn writable_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.writable_paths.push(path.into());
        self
    }

    /// The worker arguments of `read_only_fs` for the writable paths plus `temp`.
    fn sandbox_args(&self, temp: Option<&std::path::Path>) -> Vec<OsString> {
        let mut args = Vec::new();
        if !self.read_only_fs {
            return args;
        }
        args.push("--read-only-fs".into());
        for path in temp
            .into_iter()
            .chain(self.writable_paths.iter().map(PathBuf::as_path))
        {
            args.push("--writable".into());
            args.push(path.as_os_str().to_owned());
        }
        args
    }

    fn worker_config(&self) -> WorkerConfig {
        let mut args = self.worker_args.clone();
        if self.eager_import {
            args.push("--eager-import".into());
        }
        if let Some(mb) = self.memory_mb {
            args.push("--memory-mb".into());
            args.push(mb.to_string().into());
        }
        if let Some(seconds) = self.cpu_seconds {
            args.push("--cpu-seconds".into());
            args.push(seconds.to_string().into());
        }
        if self.no_network {
            args.push("--no-network".into());
        }
        args.extend(self.extra_args.iter().cloned());
        WorkerConfig {
            program: self.python.clone(),
            args,
            env_allow: self.env_allow.clone(),
            env: self.env.clone(),
            thread_cap: self.thread_cap,
            current_dir: self.current_dir.clone(),
            start_timeout: self.start_timeout,
            heartbeat_interval: self.heartbeat_interval.filter(|d| !d.is_zero()),
            heartbeat_timeout: self
                .heartbeat_timeout
                .or(self.heartbeat_interval)
                .unwrap_or(Duration::from_secs(5)),
            max_missed_heartbeats: self.max_missed_heartbeats,
            kill_process_group: self.kill_process_group,
            msgpack_threshold: self.msgpack_threshold,
        }
    }

    /// Starts `min_workers` workers at once and waits until each has sent `ready` and run the
    /// init operations. If any cannot start, the others are stopped and its error returned.
    pub async fn build(self) -> Result<Pool, BridgeError> {
        let mut worker_config = self.worker_config();
        if self.no_network {
            check_no_network(&worker_config, &self.worker_args).await?;
        }
        let fs_temp = if self.read_only_fs {
            let temp = self.prepare_read_only_fs(&mut worker_config)?;
            let mut args = self.worker_args.clone();
            args.push("--check-read-only-fs".into());
            args.extend(self.sandbox_args(Some(temp.path())));
            check_read_only_fs(&worker_config, &args).await?;
            Some(temp)
        } else {
            None
        };
        let sandbox_args = self.sandbox_args(fs_temp.as_ref().map(tempfile::TempDir::path));
        // Before the extra arguments (`arg`), which a test worker script may read last.
        let at = worker_config.args.len() - self.extra_args.len();
        worker_config
            .args
            .splice(at..at, sandbox_args.iter().cloned());
        let fork_server = if self.fork_server {
            let server = ForkServer::start(
                &worker_config,
                &self.worker_args,
                self.memory_mb,
                self.cpu_seconds,
                self.no_network,
                &sandbox_args,
            )
            .await?;
            worker_config.args.push("--fork-from".into());
            worker_config.args.push(server.name().into());
            Some(server)
        } else {
            None
        };
        let worker_config = Arc::new(worker_config);
        let min = self.min_workers;
        let call_breaker = self.call_breaker.map(|c| Mutex::new(Breaker::new(c)));
        let shared = Arc::new_cyclic(|weak| Shared {
            weak: weak.clone(),
            worker_config,
            fork_server,
            fs_temp,
            config: self,
            state: Mutex::new(State::default()),
            call_breaker,
            counters: Counters::default(),
            request_ids: Arc::new(AtomicU64::new(1)),
            next_worker: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            stop: watch::Sender::new(false),
            starts: Mutex::new(JoinSet::new()),
        });
        lock(&shared.state).starting = min;
        let starts = (0..min).map(|_| shared.start_one());
        let results = futures_util::future::join_all(starts).await;
        let mut workers = Vec::new();
        let mut first_error = None;
        for r in results {
            match r {
                Ok(w) => workers.push(w),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            lock(&shared.state).shutting_down = true;
            for w in &workers {
                w.kill("the pool could not start all its workers");
            }
            return Err(e);
        }
        {
            let mut st = lock(&shared.state);
            st.starting = 0;
            for w in &workers {
                // One that died already is replaced by the maintenance task.
                if w.mark_ready() {
                    st.workers.insert(w.wref.id, w.clone());
                    st.idle.push_back((w.wref.id, Instant::now()));
                }
            }
        }
        tracing::info!(target: "dspex::bridge", workers = min, "pool started");
        tokio::spawn(maintain(Arc::downgrade(&shared)));
        Ok(Pool { shared })
    }
}

impl PoolBuilder {
    /// `read_only_fs`: checks the writable paths, creates the workers' temporary directory and
    /// points `TMPDIR` (and `DSPY_CACHEDIR`, unless set) at it.
    fn prepare_read_only_fs(
        &self,
        config: &mut WorkerConfig,
    ) -> Result<tempfile::TempDir, BridgeError> {
        for path in &self.writable_paths {
            if let Err(e) = std::fs::metadata(path) {
                return Err(BridgeError::FilesystemIsolation {
                    reason: format!("the writable path {} cannot be used: {e}", path.display()),
                });
            }
        }
        let temp = tempfile::Builder::new()
            .prefix("dspex-workers-")
            .tempdir()
            .map_err(|e| BridgeError::FilesystemIsolation {
                reason: format!("cannot create the workers' temporary directory: {e}"),
            })?;
        let dir = temp.path().to_string_lossy().into_owned();
        config.env.retain(|(k, _)| k != "TMPDIR");
        config.env.push(("TMPDIR".into(), dir.clone()));
        if !self.env.iter().any(|(k, _)| k == "DSPY_CACHEDIR") {
            config
                .env
                .push(("DSPY_CACHEDIR".into(), format!("{dir}/dspy_cache")));
        }
        Ok(temp)
    }
}

/// Runs the worker once with `--check-read-only-fs` (it applies the ruleset to itself and
/// exits): an error unless it could.
async fn check_read_only_fs(config: &WorkerConfig, args: &[OsString]) -> Result<(), BridgeError> {
    let mut cmd = super::super::worker::command(config, args);
    cmd.stdin(std::process::Stdio::null());
    let program = config.program.to_string_lossy().into_owned();
    let output = match tokio::time::timeout(config.start_timeout, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(BridgeError::Spawn {
                program,
                message: format!("cannot run the read_only_fs check: {e}"),
            });
        }
        Err(_) => {
            return Err(BridgeError::FilesystemIsolation {
                reason: format!(
                    "the check did not finish within {:?} (start timeout)",
                    config.start_timeout
                ),
            });
        }
    };
    if output.status.success() {
        tracing::debug!(target: "dspex::bridge", "read_only_fs: the workers can restrict their file system");
        return Ok(());
    }
    Err(BridgeError::FilesystemIsolation {
        reason: format!(
            "the worker's check {}: {}",
            output.status,
            last_lines(&output)
        ),
    })
}

/// The last few non-empty lines a check wrote (stderr, then stdout), joined with ` | `.
fn last_lines(output: &std::process::Output) -> String {
    let mut said: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&output.stdout).lines())
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if said.len() > 5 {
        said.drain(..said.len() - 5);
    }
    said.join(" | ")
}

/// Runs the worker once with `--check-no-network` (it tries the isolation and exits): an error
/// unless it could isolate itself.
async fn check_no_network(
    config: &WorkerConfig,
    base_args: &[OsString],
) -> Result<(), BridgeError> {
    let mut args = base_args.to_vec();
    args.push("--check-no-network".into());
    let mut cmd = super::super::worker::command(config, &args);
    cmd.stdin(std::process::Stdio::null());
    let program = config.program.to_string_lossy().into_owned();
    let output = match tokio::time::timeout(config.start_timeout, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(BridgeError::Spawn {
                program,
                message: format!("cannot run the no_network check: {e}"),
            });
        }
        Err(_) => {
            return Err(BridgeError::NetworkIsolation {
                message: format!(
                    "the check did not finish within {:?} (start timeout)",
                    config.start_timeout
                ),
            });
        }
    };
    if output.status.success() {
        tracing::debug!(target: "dspex::bridge", "no_network: the workers can isolate themselves");
        return Ok(());
    }
    // The worker writes its logs to stderr (its stdout is the protocol's).
    let mut said: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&output.stdout).lines())
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if said.len() > 5 {
        said.drain(..said.len() - 5);
    }
    Err(BridgeError::NetworkIsolation {
        message: format!("the worker's check {}: {}", output.status, said.join(" | ")),
    })
}
