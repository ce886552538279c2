//! One [`LM`] over several endpoints of the same model: the members of the fleet, how a call
//! picks one (power of two choices on outstanding requests / weight, skipping ejected
//! endpoints), which failures are re-sent to another endpoint at once (failover), and the
//! per-endpoint counters [`LM::endpoints`] reports.
//!
//! **Ejection and re-admission.** Each endpoint has its own [`Breaker`] (the LM's
//! [`BreakerConfig`], shared process-wide per URL as for a single endpoint): after
//! `failure_threshold` consecutive endpoint failures it opens and the endpoint is skipped; after
//! `cool_down` one call is let through as a probe, and its success closes the breaker and puts
//! the endpoint back into rotation.
//!
//! **Failover.** A call whose exchange failed *before any byte of its answer arrived* is re-sent
//! at once to another endpoint not tried yet in this attempt, holding the same concurrency slot
//! and without counting as an attempt of the caller's retry policy. "Before any byte of the
//! answer" means, precisely:
//! - the connection could not be opened, or broke (refused, reset, closed) before the status
//!   line arrived, including a transport-level connect timeout;
//! - the status line said the endpoint could not take the request: 429 (a rate limit, not an
//!   exhausted quota), 502, 503 or 504 (its body, an error message, is read but is no answer);
//! - for streamed calls, the per-attempt timeout ran out before the status line (a streamed
//!   attempt ends at the status line, see [`LM::stream_with`]).
//!
//! Not failed over: any 2xx answer whose body then breaks off or does not decode (bytes of the
//! answer arrived), a plain call's per-attempt timeout (the endpoint accepted the request and may
//! be generating: re-sending would pay for it twice; the caller's retry policy decides), the
//! call's deadline, and every other status (a 400 is the request's fault; a 500 may be too).
//! Those go to the caller's retry policy as with one endpoint. When every endpoint has been tried,
//! the last failure is the attempt's error.

use super::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The most endpoints one [`LM`] may have.
pub(crate) const MAX_ENDPOINTS: usize = 64;

/// One endpoint of the fleet: where and how to reach it, its breaker and its counters.
pub(crate) struct Member {
    /// The base URL, credentials removed.
    pub(crate) endpoint: String,
    pub(crate) http: Transport,
    pub(crate) urls: Urls,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) weight: u32,
    outstanding: AtomicUsize,
    served: AtomicU64,
    failures: AtomicU64,
    failovers: AtomicU64,
}

impl Member {
    pub(crate) fn new(
        endpoint: String,
        http: Transport,
        urls: Urls,
        breaker: Arc<Breaker>,
        weight: u32,
    ) -> Member {
        Member {
            endpoint,
            http,
            urls,
            breaker,
            weight,
            outstanding: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
        }
    }

    /// The member's counters and health, as observed now.
    fn stats(&self) -> EndpointStats {
        let breaker = self.breaker.state();
        EndpointStats {
            url: self.endpoint.clone(),
            weight: self.weight,
            outstanding: self.outstanding.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            healthy: !matches!(breaker, BreakerState::Open { .. }),
            breaker,
        }
    }

    /// Counts the outcome of one exchange with this endpoint.
    pub(crate) fn count(&self, ok: bool, endpoint_failure: bool) {
        if ok {
            self.served.fetch_add(1, Ordering::Relaxed);
        } else if endpoint_failure {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request moved away from this endpoint.
    pub(crate) fn count_failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }
}

/// One endpoint of an [`LM`] as observed by [`LM::endpoints`]: its URL (credentials removed),
/// weight, load, counters and health.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The base URL, without `user:password@`.
    pub url: String,
    /// The endpoint's share of the load relative to the others (1 unless set with
    /// [`LmBuilder::endpoint_weighted`]).
    pub weight: u32,
    /// Requests sent to it and not finished yet (a stream counts until it ends).
    pub outstanding: usize,
    /// Exchanges it answered successfully.
    pub served: u64,
    /// Exchanges that failed against it (timeouts, connection failures, 5xx, undecodable
    /// answers: what counts against its breaker).
    pub failures: u64,
    /// Requests that failed on it before any byte of the answer and were re-sent to another
    /// endpoint.
    pub failovers: u64,
    /// Its breaker's state.
    pub breaker: BreakerState,
    /// Whether calls may go to it: its breaker is not open (closed, or half-open and ready for
    /// a probe).
    pub healthy: bool,
}

/// A request outstanding on one endpoint: counted from the moment it is sent until this guard is
/// dropped (with the exchange, or with a stream when it ends).
pub(crate) struct Lease {
    member: Arc<Member>,
}

impl Lease {
    pub(crate) fn new(member: &Arc<Member>) -> Lease {
        member.outstanding.fetch_add(1, Ordering::Relaxed);
        Lease {
            member: Arc::clone(member),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A failed exchange, with whether it failed before any byte of the answer arrived (see the
/// module docs).
pub(crate) struct Failed {
    pub(crate) error: LmError,
    pub(crate) before_answer: bool,
}

impl Failed {
    /// A failure before the answer: the connection, or a status line that is no answer.
    pub(crate) fn early(error: LmError) -> Failed {
        Failed {
            error,
            before_answer: true,
        }
    }
}

impl From<LmError> for Failed {
    /// A failure once the answer had started arriving (the conservative default).
    fn from(error: LmError) -> Failed {
        Failed {
            error,
            before_answer: false,
        }
    }
}

/// Whether a failure before the answer is re-sent to another endpoint: connection failures, a
/// transport timeout before the status line, and the statuses that say "not here, not now"
/// (a 429 rate limit, 502, 503, 504). A 429 that means "out of quota" (a billing error) is not:
/// it is the account's, not the endpoint's.
pub(crate) fn fails_over(error: &LmError) -> bool {
    match error {
        LmError::Connect { .. } | LmError::Timeout { .. } | LmError::RateLimited { .. } => true,
        LmError::Http { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

/// The endpoints of one [`LM`] (one for an LM built with a single base URL).
pub(crate) struct Fleet {
    pub(crate) members: Vec<Arc<Member>>,
}

/// A bit set of the members tried (or found ejected) during one attempt.
pub(crate) type Tried = u64;

impl Fleet {
    /// The member at `index` (an index [`pick`](Fleet::pick) returned).
    pub(crate) fn member(&self, index: usize) -> &Arc<Member> {
        &self.members[index]
    }

    /// The counters of every member, in the order the endpoints were given.
    pub(crate) fn stats(&self) -> Vec<EndpointStats> {
        self.members.iter().map(|m| m.stats()).collect()
    }

    /// A member not in `tried` whose breaker admits a call, chosen by the power of two choices:
    /// two distinct candidates drawn at random, the one with fewer outstanding requests per unit
    /// of weight wins. A member whose breaker refuses is skipped and the draw repeats. `Err`
    /// carries the shortest wait until an ejected member takes a probe (none admitted).
    pub(crate) fn pick(&self, mut tried: Tried) -> Result<(usize, Admission<'_>), Duration> {
        if let [only] = self.members.as_slice() {
            return if tried & 1 == 0 {
                only.breaker.admit().map(|a| (0, a))
            } else {
                Err(Duration::ZERO)
            };
        }
        let mut soonest: Option<Duration> = None;
        loop {
            let candidates = self.members.len() - tried.count_ones() as usize;
            let choice = match candidates {
                0 => return Err(soonest.unwrap_or(Duration::ZERO)),
                1 => self.nth_untried(tried, 0),
                n => {
                    let draw = random();
                    let a = (draw % n as u64) as usize;
                    let b = ((draw >> 32) % (n as u64 - 1)) as usize;
                    let b = if b >= a { b + 1 } else { b };
                    let (a, b) = (self.nth_untried(tried, a), self.nth_untried(tried, b));
                    if self.lighter(b, a) { b } else { a }
                }
            };
            match self.members[choice].breaker.admit() {
                Ok(admission) => return Ok((choice, admission)),
                Err(wait) => {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    tried |= 1 << choice;
                }
            }
        }
    }

    /// The index of the `n`th member not in `tried`.
    fn nth_untried(&self, tried: Tried, n: usize) -> usize {
        (0..self.members.len())
            .filter(|i| tried & (1 << i) == 0)
            .nth(n)
            .unwrap_or(0)
    }

    /// Whether member `a` carries less load per unit of weight than member `b`.
    fn lighter(&self, a: usize, b: usize) -> bool {
        let load = |i: usize| {
            let m = &self.members[i];
            (
                m.outstanding.load(Ordering::Relaxed) as u64,
                u64::from(m.weight),
            )
        };
        let ((oa, wa), (ob, wb)) = (load(a), load(b));
        // (oa + 1) / wa < (ob + 1) / wb, without division.
        (oa + 1) * wb < (ob + 1) * wa
    }

    /// The base URLs, credentials removed, joined with commas (what [`LM::endpoint`] returns).
    pub(crate) fn joined(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The state of the healthiest breaker: closed if any is closed (the fewest failures), else
    /// half-open if any is, else open with the shortest wait.
    pub(crate) fn best_breaker_state(&self) -> BreakerState {
        let rank = |s: &BreakerState| match *s {
            BreakerState::Closed { failures } => (0, u128::from(failures)),
            BreakerState::HalfOpen => (1, 0),
            BreakerState::Open { remaining } => (2, remaining.as_nanos()),
        };
        self.members
            .iter()
            .map(|m| m.breaker.state())
            .min_by_key(rank)
            .unwrap_or(BreakerState::Closed { failures: 0 })
    }
}

/// A fast, well-mixed random number (splitmix64 over a process-wide counter): the balancer needs
/// spread, not secrecy.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryPolicy;
    use dspex_testing::{Fault, FaultWhen, MockLm};

    fn lm(bases: &[(&str, u32)], breaker: BreakerConfig) -> LM {
        let mut builder = LM::builder("openai/m")
            .api_key("k")
            .cache(false)
            .retry(RetryPolicy::none())
            .breaker(breaker);
        for (base, weight) in bases {
            builder = builder.endpoint_weighted(*base, *weight);
        }
        builder.build().unwrap()
    }

    fn fleet(lm: &LM) -> &Fleet {
        &lm.shared.fleet
    }

    /// A breaker config unique to a test, so the process-wide registry does not share breakers
    /// between tests that name the same URLs.
    fn breaker(threshold: u32, cool_down_ms: u64) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_millis(cool_down_ms),
        }
    }

    #[test]
    fn power_of_two_choices_prefers_the_lighter_endpoint_per_weight() {
        let lm = lm(
            &[("http://10.9.0.1:1/v1", 1), ("http://10.9.0.2:1/v1", 1)],
            breaker(5, 10_001),
        );
        let f = fleet(&lm);
        // Four requests outstanding on the first: with two endpoints, both are always drawn and
        // the idle one wins every time.
        let _held: Vec<Lease> = (0..4).map(|_| Lease::new(f.member(0))).collect();
        for _ in 0..50 {
            let (index, admission) = f.pick(0).unwrap();
            assert_eq!(index, 1);
            drop(admission);
        }
        assert_eq!(f.stats()[0].outstanding, 4);
        drop(_held);
        assert_eq!(f.stats()[0].outstanding, 0);

        // Weight 3 against 1: three outstanding on the heavy one weigh like one on the light.
        let lm = lm_weighted();
        let f = fleet(&lm);
        let _heavy: Vec<Lease> = (0..2).map(|_| Lease::new(f.member(0))).collect();
        let _light = Lease::new(f.member(1));
        // (2 + 1) / 3 = 1 < (1 + 1) / 1 = 2: the heavy endpoint still wins.
        assert_eq!(f.pick(0).unwrap().0, 0);
        let _more: Vec<Lease> = (0..4).map(|_| Lease::new(f.member(0))).collect();
        // (6 + 1) / 3 > 2: now the light one.
        assert_eq!(f.pick(0).unwrap().0, 1);
    }

    fn lm_weighted() -> LM {
        lm(
            &[("http://10.9.1.1:1/v1", 3), ("http://10.9.1.2:1/v1", 1)],
            breaker(5, 10_002),
        )
    }

    #[test]
    fn equal_load_spreads_over_every_endpoint() {
        let lm = lm(
            &[
                ("http://10.9.2.1:1/v1", 1),
                ("http://10.9.2.2:1/v1", 1),
                ("http://10.9.2.3:1/v1", 1),
            ],
            breaker(5, 10_003),
        );
        let f = fleet(&lm);
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[f.pick(0).unwrap().0] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn tried_and_ejected_endpoints_are_skipped_and_re_admitted_by_a_probe() {
        let lm = lm(
            &[
                ("http://10.9.3.1:1/v1", 1),
                ("http://10.9.3.2:1/v1", 1),
                ("http://10.9.3.3:1/v1", 1),
            ],
            breaker(1, 40),
        );
        let f = fleet(&lm);
        // Tried ones are never picked again in the same attempt.
        for _ in 0..50 {
            assert_eq!(f.pick(0b101).unwrap().0, 1);
        }
        assert_eq!(f.pick(0b111).unwrap_err(), Duration::ZERO);
        // Eject the second endpoint: one failure opens its breaker.
        f.member(1).breaker.admit().unwrap().record(true);
        assert!(!f.stats()[1].healthy);
        for _ in 0..50 {
            assert_ne!(f.pick(0).unwrap().0, 1);
        }
        // With the others tried, the wait until its probe comes back.
        let wait = f.pick(0b101).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(40));
        // After the cool-down one probe is let through; its success re-admits the endpoint.
        std::thread::sleep(Duration::from_millis(50));
        let (index, probe) = f.pick(0b101).unwrap();
        assert_eq!(index, 1);
        assert!(f.pick(0b101).is_err(), "one probe at a time");
        probe.record(false);
        assert_eq!(f.stats()[1].breaker, BreakerState::Closed { failures: 0 });
        assert_eq!(f.pick(0b101).unwrap().0, 1);
        // Every breaker open: the shortest wait; the LM's state is the healthiest one's.
        for m in &f.members {
            m.breaker.admit().unwrap().record(true);
        }
        assert!(f.pick(0).is_err());
        assert!(matches!(lm.breaker_state(), BreakerState::Open { .. }));
    }

    #[test]
    fn which_failures_fail_over() {
        let model = || "m".to_string();
        let endpoint = || "http://e".to_string();
        let http = |status| LmError::from_provider(model(), endpoint(), status, None, "x", None);
        for status in [429, 502, 503, 504] {
            assert!(fails_over(&http(status)), "{status}");
        }
        for status in [400, 401, 404, 422, 500] {
            assert!(!fails_over(&http(status)), "{status}");
        }
        let quota = LmError::from_provider(
            model(),
            endpoint(),
            429,
            Some("insufficient_quota".into()),
            "You exceeded your current quota",
            None,
        );
        assert_eq!(quota.kind(), crate::LmErrorKind::Billing);
        assert!(!fails_over(&quota));
        assert!(fails_over(&LmError::Connect {
            model: model(),
            endpoint: endpoint(),
            message: "refused".into()
        }));
        assert!(fails_over(&LmError::Timeout {
            model: model(),
            endpoint: endpoint(),
            timeout: Duration::from_secs(1)
        }));
        assert!(!fails_over(&LmError::Decode {
            model: model(),
            endpoint: endpoint(),
            message: "bad".into(),
            raw: String::new()
        }));
        assert!(!fails_over(&LmError::DeadlineExceeded {
            model: model(),
            endpoint: endpoint(),
            deadline: Duration::from_secs(1),
            attempts: 1
        }));
        // What `From` makes is not a failure before the answer; `early` is.
        let late = Failed::from(http(503));
        assert!(!late.before_answer);
        assert!(Failed::early(http(503)).before_answer);
    }

    #[test]
    fn building_a_fleet() {
        let lm = LM::builder("openai/m")
            .api_base("http://u:secret@10.9.4.1:1/v1/, http://10.9.4.2:1/v1")
            .build()
            .unwrap();
        assert_eq!(lm.endpoint(), "http://10.9.4.1:1/v1,http://10.9.4.2:1/v1");
        assert!(!format!("{lm:?}").contains("secret"));
        let env = |name: &str| {
            (name == "OPENAI_API_BASE").then(|| "http://10.9.4.3:1/v1,http://10.9.4.4:1/v1".into())
        };
        let lm = LM::builder("openai/m").build_in(&env).unwrap();
        let urls: Vec<String> = lm.endpoints().into_iter().map(|e| e.url).collect();
        assert_eq!(urls, ["http://10.9.4.3:1/v1", "http://10.9.4.4:1/v1"]);
        // Endpoints given replace the base URL.
        let lm = LM::builder("openai/m")
            .api_base("http://10.9.4.5:1/v1")
            .endpoints(["http://10.9.4.6:1/v1"])
            .build()
            .unwrap();
        assert_eq!(lm.endpoint(), "http://10.9.4.6:1/v1");
        let err = LM::builder("openai/m")
            .endpoint_weighted("http://10.9.4.7:1/v1", 0)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("weight 0"), "{err}");
        let err = LM::builder("openai/m")
            .endpoints(["http://a:1/v1", "ftp://b"])
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("must start with http"), "{err}");
        let many: Vec<String> = (0..65).map(|i| format!("http://10.9.5.{i}:1/v1")).collect();
        let err = LM::builder("openai/m").endpoints(many).build().unwrap_err();
        assert!(err.to_string().contains("at most 64"), "{err}");
    }

    /// A port nothing listens on (bound, then released).
    fn dead_base() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/v1")
    }

    #[tokio::test]
    async fn refused_connections_and_unavailable_statuses_fail_over_without_a_retry() {
        let good = MockLm::start().await.unwrap();
        let busy = MockLm::builder()
            .fault(Fault::Status(503), FaultWhen::Always)
            .start()
            .await
            .unwrap();
        let dead = dead_base();
        let lm = lm(
            &[(&dead, 1), (&busy.api_base(), 1), (&good.api_base(), 1)],
            breaker(1000, 10_004),
        );
        for i in 0..20 {
            let answer = lm.call(crate::LmRequest::prompt(format!("q{i}"))).await;
            assert!(answer.is_ok(), "{answer:?}");
        }
        let stats = lm.endpoints();
        assert_eq!(stats[2].served, 20);
        // The history names the endpoint that answered.
        let history = lm.history(20);
        assert_eq!(history.len(), 20);
        assert!(
            history
                .iter()
                .all(|e| e.endpoint.as_deref() == Some(good.api_base().as_str()))
        );
        assert_eq!(stats[0].served + stats[1].served, 0);
        assert_eq!(stats[0].failovers, stats[0].failures);
        assert_eq!(stats[1].failovers, stats[1].failures);
        assert!(stats[0].failovers + stats[1].failovers > 0);
        assert!(stats.iter().all(|e| e.outstanding == 0));
        // Streams fail over the same way.
        use futures_util::StreamExt;
        let mut events = lm
            .stream(crate::LmRequest::prompt("stream me"))
            .await
            .unwrap();
        while let Some(event) = events.next().await {
            event.unwrap();
        }
        drop(events);
        assert_eq!(lm.endpoints()[2].served, 21);
        assert!(lm.endpoints().iter().all(|e| e.outstanding == 0));
    }

    /// Collects the values recorded for the `served_by` field of any span (a layer over
    /// tracing-subscriber's registry, which tracks the current span as real subscribers do).
    #[derive(Default, Clone)]
    struct ServedBy(Arc<std::sync::Mutex<Vec<String>>>);

    struct Visit<'a>(&'a std::sync::Mutex<Vec<String>>);

    impl tracing::field::Visit for Visit<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "dspex.lm.served_by" {
                self.0.lock().unwrap().push(format!("{value:?}"));
            }
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ServedBy {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            attrs.record(&mut Visit(&self.0));
        }

        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(&mut Visit(&self.0));
        }
    }

    #[test]
    fn the_call_span_names_the_endpoint_that_served_it() {
        use tracing_subscriber::layer::SubscriberExt;
        let collector = ServedBy::default();
        let subscriber = tracing_subscriber::registry().with(collector.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                let good = MockLm::start().await.unwrap();
                let dead = dead_base();
                let lm = lm(&[(&dead, 1), (&good.api_base(), 1)], breaker(1000, 10_008));
                for i in 0..5 {
                    lm.call(crate::LmRequest::prompt(format!("q{i}")))
                        .await
                        .unwrap();
                }
            });
        });
        let served = collector.0.lock().unwrap().clone();
        assert_eq!(served.len(), 5, "{served:?}");
        assert!(
            served
                .iter()
                .all(|s| !s.contains(":1/") && s.contains("/v1")),
            "{served:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_started_arriving_is_not_sent_again() {
        let broken = MockLm::builder()
            .fault(Fault::ResetMidBody, FaultWhen::Always)
            .start()
            .await
            .unwrap();
        let bad_request = MockLm::builder()
            .fault(Fault::Status(400), FaultWhen::Always)
            .start()
            .await
            .unwrap();
        let good = MockLm::start().await.unwrap();
        for (failing, cool) in [(&broken, 10_005), (&bad_request, 10_006)] {
            let lm = lm(
                &[(&failing.api_base(), 1_000_000), (&good.api_base(), 1)],
                breaker(1000, cool),
            );
            // The weight makes the failing endpoint the first pick whenever it is drawn.
            let mut failed = 0;
            for i in 0..10 {
                if lm
                    .call(crate::LmRequest::prompt(format!("q{i}")))
                    .await
                    .is_err()
                {
                    failed += 1;
                }
            }
            let stats = lm.endpoints();
            assert_eq!(failed, 10, "{stats:?}");
            assert_eq!(stats[0].failovers, 0);
            assert_eq!(stats[1].served, 0);
        }
    }

    #[tokio::test]
    async fn one_endpoint_keeps_its_errors() {
        let dead = dead_base();
        let lm = lm(&[(&dead, 1)], breaker(1000, 10_007));
        let err = lm.call(crate::LmRequest::prompt("q")).await.unwrap_err();
        assert!(
            matches!(&err, LmError::Connect { endpoint, .. } if *endpoint == dead),
            "{err:?}"
        );
        assert_eq!(lm.endpoints()[0].failovers, 0);
        assert_eq!(lm.endpoints()[0].failures, 1);
    }
}
