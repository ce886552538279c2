//! Throwaway Redis servers for tests (feature `redis`): a `redis-server` process on a free
//! loopback port, without persistence (`--save '' --appendonly no`), in a temporary directory,
//! killed and cleaned up when dropped; and a 3-node Redis Cluster made of three such servers.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program started: `$DSPEX_REDIS_SERVER`, else `redis-server` on the `PATH`.
fn server_program() -> String {
    std::env::var("DSPEX_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// A `redis-server` process on 127.0.0.1, stopped (SIGKILL) and its directory removed on drop.
///
/// ```no_run
/// use dspex::testing::RedisServer;
///
/// let redis = RedisServer::start()?;
/// let url = redis.url(); // "redis://127.0.0.1:PORT"
/// # let _ = url;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port and waits (up to 10 s) until it answers `PING`.
    pub fn start() -> io::Result<RedisServer> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`--requirepass`, `--cluster-enabled`,
    /// …). A port taken between the probe and the start is retried on another port.
    pub fn start_with(args: &[&str]) -> io::Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let dir = std::env::temp_dir().join(format!(
                "dspex-redis-{}-{port}-{}",
                std::process::id(),
                unique()
            ));
            std::fs::create_dir_all(&dir)?;
            let child = spawn(port, &dir, args)?;
            let mut server = RedisServer {
                child: Some(child),
                port,
                dir,
            };
            match server.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// Starts a fresh (empty) server on the same port after [`kill`](Self::kill): the end of
    /// an outage.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.child = Some(spawn(self.port, &self.dir, &[])?);
        self.wait_ready(Duration::from_secs(10))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server at once (SIGKILL) and waits for it to exit: an outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command in RESP and returns the raw reply (a test helper, not a client).
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        command(self.port, args)
    }

    fn wait_ready(&mut self, within: Duration) -> io::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "redis-server exited at start: {status}"
                )));
            }
            if let Ok(reply) = command(self.port, &["PING"])
                && (reply.starts_with("+PONG") || reply.starts_with("-NOAUTH"))
            {
                return Ok(());
            }
            if start.elapsed() > within {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not answer PING in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 3-node Redis Cluster (no replicas) on free loopback ports, made with
/// `redis-cli --cluster create`; every node is stopped on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them and waits (up to 20 s) until the cluster
    /// reports `cluster_state:ok` on every node.
    pub fn start() -> io::Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let cli = std::env::var("DSPEX_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_string());
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{cli}`: {e}")))?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let start = Instant::now();
        loop {
            let ready = nodes.iter().all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ready {
                return Ok(RedisCluster { nodes });
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the cluster did not reach cluster_state:ok",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes' URLs joined with commas: the address form dspex reads as a cluster.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn spawn(port: u16, dir: &Path, args: &[&str]) -> io::Result<Child> {
    Command::new(server_program())
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot start `{}` (install Debian's redis-server, or set DSPEX_REDIS_SERVER): {e}",
                    server_program()
                ),
            )
        })
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One RESP command, its reply read until the first complete line (bulk replies whole).
fn command(port: u16, args: &[&str]) -> io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if let Some(len) = line.strip_prefix('$') {
        let len: i64 = len
            .trim()
            .parse()
            .map_err(|_| io::Error::other("bad bulk length"))?;
        if len >= 0 {
            let mut body = vec![0; usize::try_from(len).unwrap_or(0) + 2];
            reader.read_exact(&mut body)?;
            return Ok(String::from_utf8_lossy(&body[..body.len() - 2]).into_owned());
        }
    }
    Ok(line)
}
