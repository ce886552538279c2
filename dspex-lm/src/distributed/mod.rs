//! State shared across processes through Redis (feature `redis`): the Redis tier of the response
//! cache with single flight across processes ([`RedisConfig`], set with
//! [`CacheConfig::redis`](crate::CacheConfig::redis)) and rate limits shared by every process
//! calling an endpoint with a key ([`SharedRateLimit`], set with
//! [`LmBuilder::shared_rate_limit`](crate::LmBuilder::shared_rate_limit)).
//!
//! # Addresses
//!
//! A Redis address is a `redis://[user:password@]host[:port][/db]` URL. A comma-separated list
//! of such URLs (`redis://a:7000,redis://b:7001,redis://c:7002`) names the seed nodes of a Redis
//! Cluster, reached through the `redis` crate's cluster client.
//!
//! `rediss://` URLs speak TLS (rustls, through the `redis` crate's `tokio-rustls-comp`): the
//! server's certificate is checked against the system's trust store, or against the root
//! certificate given with [`RedisConfig::tls_root_certificate`] /
//! [`SharedRateLimit::tls_root_certificate`] (a private CA, as managed Redis services and
//! self-run servers use). The `redis` crate builds its TLS set-up with rustls's process-wide
//! crypto provider: when the process has none installed yet, dspex installs rustls's *ring*
//! provider (the one dspex's HTTP clients use) before the first TLS client is made; a provider
//! the application installed first is left in place.
//!
//! The URL may hold a password: it is kept in a [`RedisUrl`], whose `Debug` and `Display` print
//! the URL without its credentials, and every error or log line built from a Redis error has the
//! password masked.
//!
//! # Failures
//!
//! Redis is never in the way of a call. Every command runs under a short timeout (250 ms by
//! default); a failure (refused connection, timeout, a node of the cluster down) counts in
//! [`CacheStats::redis_errors`](crate::CacheStats::redis_errors) or
//! [`LimitStats::shared_errors`](crate::LimitStats::shared_errors) and the call goes on without
//! Redis: the local tiers answer and the local limits apply. One `tracing::warn!` is written per
//! outage and at most one every 30 seconds while it lasts, never one per call. The standalone
//! connection is a `redis::aio::ConnectionManager`, which reconnects by itself; a cluster
//! connection that could not be made is tried again at most once a second.

mod limit;
mod tier;

pub(crate) use limit::SharedLimiter;
pub use limit::SharedRateLimit;
pub use tier::RedisConfig;
pub(crate) use tier::{Found, Led, RedisTier};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default timeout of one Redis command.
pub(crate) const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Least time between two warnings of one outage.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Why a Redis address or setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The address is empty.
    #[error("the Redis address is empty")]
    Empty,
    /// The URL does not start with `redis://` or `rediss://`.
    #[error(
        "the Redis address `{url}` must start with redis:// or rediss:// (TLS), or be a comma-separated list of such node URLs for a cluster"
    )]
    Scheme {
        /// The URL without its credentials.
        url: String,
    },
    /// The TLS set-up of a `rediss://` address was refused: a root certificate that is not
    /// PEM, or a root certificate given for an address without TLS.
    #[error("TLS for the Redis address `{url}`: {reason}")]
    Tls {
        /// The URL without its credentials.
        url: String,
        /// What was wrong (credentials masked).
        reason: String,
    },
    /// The `redis` crate refused the URL.
    #[error("the Redis address `{url}` is not valid: {reason}")]
    Invalid {
        /// The URL without its credentials.
        url: String,
        /// What was wrong (credentials masked).
        reason: String,
    },
    /// A setting is out of range.
    #[error("Redis setting `{setting}`: {reason}")]
    Setting {
        /// The setting's name.
        setting: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// A Redis address (one URL, or the comma-separated seed nodes of a cluster) that may hold a
/// password. `Debug` and `Display` print it without credentials; [`RedisUrl::expose`] gives the
/// URL itself.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    nodes: Vec<String>,
    /// The PEM root certificate(s) that `rediss://` servers are checked against instead of the
    /// system's trust store.
    root_cert: Option<std::sync::Arc<[u8]>>,
}

impl RedisUrl {
    /// Parses a `redis://` (or `rediss://`, TLS) URL or a comma-separated list of them (a
    /// cluster's seed nodes).
    pub fn parse(address: &str) -> Result<RedisUrl, RedisConfigError> {
        let nodes: Vec<String> = address
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if nodes.is_empty() {
            return Err(RedisConfigError::Empty);
        }
        for node in &nodes {
            let url = redact(node);
            if !node.starts_with("redis://") && !node.starts_with("rediss://") {
                return Err(RedisConfigError::Scheme { url });
            }
            if let Err(e) = redis::Client::open(node.as_str()) {
                return Err(RedisConfigError::Invalid {
                    reason: mask(&e.to_string(), node),
                    url,
                });
            }
        }
        Ok(RedisUrl {
            nodes,
            root_cert: None,
        })
    }

    /// Whether the address speaks TLS (`rediss://`; a cluster whose nodes do).
    pub fn is_tls(&self) -> bool {
        self.nodes.iter().any(|n| n.starts_with("rediss://"))
    }

    /// The same address, its `rediss://` servers checked against the PEM root certificate(s)
    /// `pem` instead of the system's trust store.
    ///
    /// # Errors
    ///
    /// [`RedisConfigError::Tls`] when the address has no `rediss://` URL or `pem` holds no
    /// usable certificate.
    pub(crate) fn with_root_certificate(
        mut self,
        pem: impl Into<Vec<u8>>,
    ) -> Result<RedisUrl, RedisConfigError> {
        let pem: Vec<u8> = pem.into();
        let Some(node) = self.nodes.iter().find(|n| n.starts_with("rediss://")) else {
            return Err(RedisConfigError::Tls {
                url: self.redacted(),
                reason: "a root certificate is for rediss:// addresses; this one is redis://"
                    .into(),
            });
        };
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        if CertificateDer::pem_slice_iter(&pem).next().is_none() {
            return Err(RedisConfigError::Tls {
                url: redact(node),
                reason:
                    "the root certificate holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                        .into(),
            });
        }
        ensure_crypto_provider();
        // Building a client parses the PEM and sets up rustls, without any network I/O.
        redis::Client::build_with_tls(node.as_str(), tls_certificates(&pem)).map_err(|e| {
            RedisConfigError::Tls {
                url: redact(node),
                reason: mask(&e.to_string(), node),
            }
        })?;
        self.root_cert = Some(pem.into());
        Ok(self)
    }

    /// Whether the address names a cluster (more than one node URL).
    pub fn is_cluster(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The address as given, credentials included. Do not log it.
    pub fn expose(&self) -> String {
        self.nodes.join(",")
    }

    /// The address without credentials.
    pub fn redacted(&self) -> String {
        self.nodes
            .iter()
            .map(|n| redact(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `text` with every password of this address masked.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.nodes
            .iter()
            .fold(text.to_string(), |text, node| mask(&text, node))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The URL without `user:password@`.
fn redact(url: &str) -> String {
    crate::provider::redact_url(url)
}

/// `text` with the user info of `url` (and its password alone) replaced by `***`.
fn mask(text: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return text.to_string();
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return text.to_string();
    };
    let mut out = text.replace(userinfo, "***");
    if let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        out = out.replace(password, "***");
    } else if !userinfo.is_empty() {
        out = out.replace(userinfo, "***");
    }
    out
}

/// A connection to Redis (standalone or cluster) with timeouts, outage accounting and
/// rate-limited warnings. Cheap to share behind an `Arc`.
pub(crate) struct Conn {
    url: RedisUrl,
    op_timeout: Duration,
    kind: ConnKind,
    /// Whether the last command failed (an outage is under way).
    down: AtomicBool,
    /// When the last warning was written.
    last_warn: Mutex<Option<Instant>>,
    /// Failed commands so far.
    pub(crate) errors: AtomicU64,
    /// What the connection is used for, in warnings.
    what: &'static str,
}

enum ConnKind {
    /// Made on first use (it needs the tokio runtime), then reconnecting by itself.
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
        manager: tokio::sync::OnceCell<ConnectionManager>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        conn: tokio::sync::Mutex<ClusterState>,
    },
    /// The connection could not even be set up: every command fails.
    Broken(String),
}

#[derive(Default)]
struct ClusterState {
    conn: Option<ClusterConnection>,
    last_try: Option<Instant>,
}

/// A failed Redis command, credentials masked.
#[derive(Debug)]
pub(crate) struct OpError(pub(crate) String);

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Conn {
    /// Sets up the connection (no network I/O: the first command connects).
    pub(crate) fn new(url: RedisUrl, op_timeout: Duration, what: &'static str) -> Conn {
        if url.is_tls() {
            ensure_crypto_provider();
        }
        let kind = if url.is_cluster() {
            let mut builder = redis::cluster::ClusterClient::builder(url.nodes.clone())
                .connection_timeout(op_timeout.max(Duration::from_millis(250)))
                .response_timeout(op_timeout)
                .retries(1);
            if let Some(pem) = &url.root_cert {
                builder = builder.certs(tls_certificates(pem));
            }
            match builder.build() {
                Ok(client) => ConnKind::Cluster {
                    client,
                    conn: tokio::sync::Mutex::new(ClusterState::default()),
                },
                Err(e) => ConnKind::Broken(url.mask(&e.to_string())),
            }
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(op_timeout.max(Duration::from_millis(250))))
                .set_response_timeout(Some(op_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            let node = url.nodes[0].as_str();
            let client = match &url.root_cert {
                Some(pem) => redis::Client::build_with_tls(node, tls_certificates(pem)),
                None => redis::Client::open(node),
            };
            match client {
                Ok(client) => ConnKind::Single {
                    client,
                    config,
                    manager: tokio::sync::OnceCell::new(),
                },
                Err(e) => ConnKind::Broken(url.mask(&e.to_string())),
            }
        };
        Conn {
            url,
            op_timeout,
            kind,
            down: AtomicBool::new(false),
            last_warn: Mutex::new(None),
            errors: AtomicU64::new(0),
            what,
        }
    }

    /// Runs `cmd`, under the command timeout. A failure is counted and (rate-limited) logged.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, OpError> {
        let result = tokio::time::timeout(self.op_timeout * 2, self.run(Runnable::Cmd(cmd))).await;
        self.settle(result)
    }

    /// Runs `script` (EVALSHA, loading it on a miss) under the command timeout.
    pub(crate) async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, OpError> {
        let result =
            tokio::time::timeout(self.op_timeout * 2, self.run(Runnable::Script(invocation))).await;
        self.settle(result)
    }

    fn settle<T: redis::FromRedisValue>(
        &self,
        result: Result<Result<redis::Value, OpError>, tokio::time::error::Elapsed>,
    ) -> Result<T, OpError> {
        let value = match result {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => return Err(self.failed(e)),
            Err(_) => {
                return Err(self.failed(OpError(format!(
                    "no answer within {:?}",
                    self.op_timeout * 2
                ))));
            }
        };
        match T::from_redis_value(value) {
            Ok(v) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %self.url, "Redis {} is reachable again", self.what);
                }
                Ok(v)
            }
            Err(e) => Err(self.failed(OpError(format!(
                "unexpected answer: {}",
                self.url.mask(&e.to_string())
            )))),
        }
    }

    async fn run(&self, what: Runnable<'_, '_>) -> Result<redis::Value, OpError> {
        let mask = |e: redis::RedisError| OpError(self.url.mask(&e.to_string()));
        match &self.kind {
            ConnKind::Single {
                client,
                config,
                manager,
            } => {
                let manager = manager
                    .get_or_try_init(|| async {
                        ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    })
                    .await
                    .map_err(mask)?;
                let mut conn = manager.clone();
                what.run(&mut conn).await.map_err(mask)
            }
            ConnKind::Cluster { client, conn } => {
                let mut conn = {
                    let mut state = conn.lock().await;
                    match &state.conn {
                        Some(c) => c.clone(),
                        None => {
                            if state
                                .last_try
                                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
                            {
                                return Err(OpError(
                                    "the cluster was unreachable less than a second ago".into(),
                                ));
                            }
                            state.last_try = Some(Instant::now());
                            let c = client.get_async_connection().await.map_err(mask)?;
                            state.conn = Some(c.clone());
                            c
                        }
                    }
                };
                what.run(&mut conn).await.map_err(mask)
            }
            ConnKind::Broken(reason) => Err(OpError(reason.clone())),
        }
    }

    /// Counts a failure and warns at the start of an outage and at most every 30 s after.
    fn failed(&self, error: OpError) -> OpError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let starting = !self.down.swap(true, Ordering::Relaxed);
        let mut last = self.last_warn.lock().unwrap_or_else(|e| e.into_inner());
        if starting || last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                redis = %self.url,
                %error,
                errors = self.errors.load(Ordering::Relaxed),
                "Redis {} unavailable; going on without it (local tiers and limits only)",
                self.what
            );
        }
        error
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.url)
            .field("down", &self.down.load(Ordering::Relaxed))
            .field("errors", &self.errors.load(Ordering::Relaxed))
            .finish()
    }
}

enum Runnable<'a, 'b> {
    Cmd(&'a redis::Cmd),
    Script(&'a redis::ScriptInvocation<'b>),
}

impl Runnable<'_, '_> {
    async fn run<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> redis::RedisResult<redis::Value> {
        match self {
            Runnable::Cmd(cmd) => cmd.query_async(conn).await,
            Runnable::Script(invocation) => invocation.invoke_async(conn).await,
        }
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`: how shared keys name an endpoint or an
/// Installs rustls's *ring* provider as the process's default when none is installed yet: the
/// `redis` crate builds its TLS configuration with the default provider.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first: either way the process then has a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The `redis` crate's TLS settings: no client certificate; `root_cert` (PEM) instead of the
/// system's trust store.
fn tls_certificates(root_cert: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert.to_vec()),
    }
}

/// API key without holding it.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_never_show_their_password() {
        let url = RedisUrl::parse("redis://user:hunter2@127.0.0.1:6379/0").unwrap();
        assert!(!url.is_cluster());
        assert_eq!(format!("{url:?}"), "RedisUrl(redis://127.0.0.1:6379/0)");
        assert_eq!(url.to_string(), "redis://127.0.0.1:6379/0");
        assert_eq!(url.expose(), "redis://user:hunter2@127.0.0.1:6379/0");
        assert_eq!(
            url.mask("auth failed for user:hunter2 (hunter2)"),
            "auth failed for *** (***)"
        );
        let cluster = RedisUrl::parse("redis://:pw@a:7000, redis://:pw@b:7001").unwrap();
        assert!(cluster.is_cluster());
        assert_eq!(cluster.to_string(), "redis://a:7000,redis://b:7001");

        assert_eq!(RedisUrl::parse(" , ").unwrap_err(), RedisConfigError::Empty);
        let tls = RedisUrl::parse("rediss://u:secret@h:6380").unwrap();
        assert!(tls.is_tls() && !url.is_tls());
        assert_eq!(tls.to_string(), "rediss://h:6380");
        // A root certificate is checked when given: PEM, and for a rediss:// address.
        let bad = tls
            .clone()
            .with_root_certificate(b"not a certificate".to_vec());
        let bad = bad.unwrap_err();
        assert!(matches!(bad, RedisConfigError::Tls { .. }), "{bad:?}");
        assert!(!bad.to_string().contains("secret"), "{bad}");
        let plain = url
            .clone()
            .with_root_certificate(b"-----BEGIN CERTIFICATE-----".to_vec());
        assert!(
            matches!(plain, Err(RedisConfigError::Tls { .. })),
            "{plain:?}"
        );
        let scheme = RedisUrl::parse("http://u:secret@h").unwrap_err();
        assert!(matches!(scheme, RedisConfigError::Scheme { .. }));
        assert!(!scheme.to_string().contains("secret"), "{scheme}");
    }

    #[test]
    fn short_hashes_are_stable() {
        assert_eq!(short_hash(b"abc"), "ba7816bf8f01cfea");
    }
}
