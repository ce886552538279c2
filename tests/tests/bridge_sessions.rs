//! Bridge sessions with a lifecycle and the session store, with the real worker
//! (`python -m dspex_worker`, DSPy 3.4.1) from the project's venv (`scripts/python-env`, or the
//! interpreter in `DSPEX_BRIDGE_PYTHON`), against dspex's mock LM server: explicit close, the
//! last handle's drop and the idle TTL each free the session's objects in the worker (checked
//! by asking the worker for them afterwards: `UnknownObject`); the session's state; a chat
//! service of users × turns over a store with affinity on three workers, through a SIGKILL of
//! one of them; the store's bound.

mod common;

use common::bridge::{lm, within};
use common::venv_python;
use dspex::bridge::protocol::Op;
use dspex::bridge::{
    AffinityMode, BridgeError, Pool, Session, SessionOptions, SessionStatus, SessionStore,
};
use dspex::testing::{Latency, MockLm, MockLmServer};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

async fn pool(server: &MockLmServer, workers: usize) -> Pool {
    common::bridge::pool(venv_python())
        .workers(workers)
        .lm(Arc::new(lm(server)))
        .build()
        .await
        .expect("the pool starts")
}

fn question(q: &str) -> Map<String, Value> {
    json!({ "question": q }).as_object().unwrap().clone()
}

/// Asks the pool (any worker: the tests that use it have one) for `object`'s state: `Ok` while
/// the worker holds it.
async fn object_state(pool: &Pool, object: &str) -> Result<Value, BridgeError> {
    pool.request(Op::SaveState {
        object: object.to_string(),
    })
    .await
}

fn is_unknown_object(result: &Result<Value, BridgeError>) -> bool {
    matches!(result, Err(e) if e.remote().is_some_and(|r| r.kind == "UnknownObject"))
}

/// Waits (without a deadline of its own: `within` bounds the test) until `done`.
async fn eventually<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while !done().await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn close_frees_the_sessions_objects_and_later_calls_fail_typed() {
    within(120, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(&server, 1).await;
        let session = pool.session_with(SessionOptions::new().var("user", "ada").var("turns", 0));
        assert_eq!(session.status(), SessionStatus::Open);
        assert!(session.last_activity() >= session.created_at());
        let qa = session
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");
        let cot = session
            .create("ChainOfThought", "question -> answer", Map::new())
            .await
            .expect("create");
        // An object outside the session survives its close.
        let other = pool.session(AffinityMode::StrictQueue);
        let kept = other
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");
        let before = session.last_activity();
        let out = session
            .call(&qa, question("What is 2 + 2?"))
            .await
            .expect("call");
        assert!(out.contains_key("answer"), "{out:?}");
        assert!(session.last_activity() > before, "a call is activity");

        // The state: initial variables, set, update, a snapshot.
        assert_eq!(session.get("user"), Some(json!("ada")));
        assert_eq!(session.set("user", "grace"), Some(json!("ada")));
        let turns = session.update(|state| {
            let turns = state["turns"].as_i64().unwrap() + 1;
            state.insert("turns".into(), turns.into());
            turns
        });
        assert_eq!(turns, 1);
        assert_eq!(
            Value::Object(session.state()),
            json!({"user": "grace", "turns": 1})
        );

        let stats = pool.stats();
        assert_eq!(stats.live_sessions, 2);
        assert_eq!(stats.sessions_created, 2);

        assert_eq!(
            session.close().await.expect("close"),
            2,
            "both objects dropped"
        );
        assert_eq!(session.status(), SessionStatus::Closed);
        assert!(is_unknown_object(&object_state(&pool, &qa).await));
        assert!(is_unknown_object(&object_state(&pool, &cot).await));
        assert!(object_state(&pool, &kept).await.is_ok());
        // Closing again is harmless; calls fail with a typed error naming the session.
        assert_eq!(session.close().await.expect("close again"), 0);
        let err = session
            .call(&qa, question("Again?"))
            .await
            .expect_err("a closed session's call fails");
        assert!(
            matches!(&err, BridgeError::SessionClosed { session: s } if s == session.name()),
            "{err:?}"
        );
        assert!(err.to_string().contains("is closed"), "{err}");
        // The state stays readable.
        assert_eq!(session.get("turns"), Some(json!(1)));

        let stats = pool.stats();
        assert_eq!(stats.live_sessions, 1);
        assert_eq!(stats.sessions_closed, 1);
        assert_eq!(stats.sessions_expired, 0);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_last_handle_going_frees_the_objects_and_a_session_without_calls_needs_no_worker() {
    within(120, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(&server, 1).await;
        let session = pool.session(AffinityMode::StrictQueue);
        let qa = session
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");
        let clone = session.clone();
        drop(session);
        // A clone is the same session: still open, its object still there.
        assert_eq!(clone.status(), SessionStatus::Open);
        assert!(object_state(&pool, &qa).await.is_ok());
        drop(clone);
        // The close runs on a task: wait for the worker to have dropped the object.
        eventually(|| async { is_unknown_object(&object_state(&pool, &qa).await) }).await;
        eventually(|| async { pool.stats().live_sessions == 0 }).await;
        assert_eq!(pool.stats().sessions_closed, 1);

        // A session that never ran a call has nothing in any worker.
        let empty = pool.session(AffinityMode::StrictQueue);
        assert_eq!(empty.worker(), None);
        assert_eq!(empty.close().await.expect("close"), 0);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_idle_session_expires_after_its_ttl_and_its_objects_are_freed() {
    within(120, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(&server, 1).await;
        let ttl = Duration::from_millis(300);
        let session = pool.session_with(SessionOptions::new().idle_ttl(ttl));
        assert_eq!(session.idle_ttl(), Some(ttl));
        let qa = session
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");
        // Without a TTL a session stays open however idle.
        let lasting = pool.session(AffinityMode::StrictQueue);
        let kept = lasting
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");

        eventually(|| async { session.status() == SessionStatus::Expired { ttl } }).await;
        eventually(|| async { is_unknown_object(&object_state(&pool, &qa).await) }).await;
        let err = session
            .call(&qa, question("Still there?"))
            .await
            .expect_err("an expired session's call fails");
        assert!(
            matches!(&err, BridgeError::SessionExpired { session: s, ttl: t }
                if s == session.name() && *t == ttl),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("300ms"),
            "the error names the TTL: {err}"
        );
        assert_eq!(lasting.status(), SessionStatus::Open);
        assert!(object_state(&pool, &kept).await.is_ok());
        let stats = pool.stats();
        assert_eq!(stats.sessions_expired, 1);
        assert_eq!(stats.live_sessions, 1);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_call_running_past_the_ttl_keeps_its_session_open() {
    within(120, async {
        // Each LM call takes 1 s: five times the session's idle TTL.
        let server = MockLm::builder()
            .latency(Latency::Fixed(Duration::from_secs(1)))
            .start()
            .await
            .expect("the mock LM starts");
        let pool = pool(&server, 1).await;
        let ttl = Duration::from_millis(200);
        let session = pool.session_with(SessionOptions::new().idle_ttl(ttl));
        let qa = session
            .create("Predict", "question -> answer", Map::new())
            .await
            .expect("create");
        let out = session
            .call(&qa, question("Slow?"))
            .await
            .expect("the reaper leaves a session with a call under way alone");
        assert!(out.contains_key("answer"), "{out:?}");
        // The call's end is activity: the next request, at once, finds the session open (had
        // it expired under the call, this would fail with SessionExpired).
        session
            .request(Op::SaveState { object: qa.clone() })
            .await
            .expect("the session is still open after its long call");
        // Idle afterwards, it expires.
        eventually(|| async { session.status() == SessionStatus::Expired { ttl } }).await;
        assert_eq!(pool.stats().sessions_expired, 1);
        pool.shutdown().await;
    })
    .await;
}

/// One turn of a user's conversation: the user's session from the store, its `Predict` object
/// created on the first turn (kept in the session's state), one call. The worker's pid.
async fn turn(store: &SessionStore, user: &str, n: usize) -> Result<(Session, u32), BridgeError> {
    let session = store.get_or_create(user.to_string()).await;
    let object = match session.get("qa") {
        Some(Value::String(object)) => object,
        _ => {
            let object = session
                .create("Predict", "question -> answer", Map::new())
                .await?;
            session.set("qa", object.clone());
            object
        }
    };
    let out = session
        .call(object, question(&format!("{user}, turn {n}: what next?")))
        .await?;
    assert!(out.contains_key("answer"), "{out:?}");
    session.update(|state| {
        let turns = state.get("turns").and_then(Value::as_u64).unwrap_or(0);
        state.insert("turns".into(), (turns + 1).into());
    });
    let pid = session
        .worker()
        .expect("a session that ran a call has a worker")
        .pid;
    Ok((session, pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_service_keeps_each_conversation_on_one_worker_through_a_worker_kill() {
    within(300, async {
        const USERS: usize = 6;
        const TURNS: usize = 4;
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(&server, 3).await;
        let store: SessionStore = SessionStore::new(&pool, SessionOptions::new());

        // Concurrent callers for one new user get one session.
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.get_or_create("same-user".to_string()).await })
            })
            .collect();
        let mut firsts = Vec::new();
        for caller in callers {
            firsts.push(caller.await.expect("the caller ran"));
        }
        let names: BTreeSet<&str> = firsts.iter().map(Session::name).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(store.remove("same-user").await.expect("remove"));
        assert!(!store.remove("same-user").await.expect("remove again"));
        assert!(firsts.iter().all(|s| s.status() == SessionStatus::Closed));
        drop(firsts);

        // USERS × TURNS, the users' turns interleaved.
        let users: Vec<String> = (0..USERS).map(|u| format!("user-{u}")).collect();
        let runs = users.iter().map(|user| {
            let store = store.clone();
            async move {
                let mut seen = Vec::new();
                for n in 0..TURNS {
                    let (session, pid) = turn(&store, user, n).await.expect("a turn");
                    seen.push((session.name().to_string(), pid));
                    tokio::task::yield_now().await;
                }
                (user.clone(), seen)
            }
        });
        let runs: HashMap<String, Vec<(String, u32)>> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .collect();
        let mut worker_of = HashMap::new();
        for (user, seen) in &runs {
            let distinct: BTreeSet<&(String, u32)> = seen.iter().collect();
            assert_eq!(distinct.len(), 1, "{user}'s turns moved: {seen:?}");
            worker_of.insert(user.clone(), seen[0].1);
        }
        let used: BTreeSet<u32> = worker_of.values().copied().collect();
        assert!(
            used.len() >= 2,
            "the users' sessions spread over the workers: {worker_of:?}"
        );
        assert_eq!(store.len(), USERS);
        for user in &users {
            let session = store.get(user.as_str()).expect("the user's session");
            assert_eq!(session.get("turns"), Some(json!(TURNS)));
        }
        assert_eq!(pool.stats().live_sessions, USERS);

        // SIGKILL the worker holding the first user's conversation.
        let victim = worker_of[&users[0]];
        let status = std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let hit: Vec<&String> = users.iter().filter(|u| worker_of[*u] == victim).collect();
        let spared: Vec<&String> = users.iter().filter(|u| worker_of[*u] != victim).collect();
        let lost_sessions: Vec<Session> = hit
            .iter()
            .map(|u| store.get(u.as_str()).expect("still in the store"))
            .collect();
        eventually(|| async { lost_sessions.iter().all(Session::is_lost) }).await;
        for session in &lost_sessions {
            assert_eq!(session.status(), SessionStatus::Lost);
            let object = session.get("qa").and_then(|v| v.as_str().map(String::from));
            let err = session
                .call(object.unwrap(), question("Anyone there?"))
                .await
                .expect_err("a lost session's call fails");
            assert!(matches!(err, BridgeError::SessionLost { .. }), "{err:?}");
        }
        // The store replaces a lost session on the next get_or_create: a new, empty session
        // (the conversation starts over), on a live worker.
        for user in &hit {
            let (session, pid) = turn(&store, user, TURNS)
                .await
                .expect("a turn after the kill");
            assert_ne!(pid, victim);
            assert!(!runs[*user].iter().any(|(name, _)| name == session.name()));
            assert_eq!(session.get("turns"), Some(json!(1)));
        }
        // The other conversations go on, on their workers, in their sessions.
        for user in &spared {
            let (session, pid) = turn(&store, user, TURNS).await.expect("a turn");
            assert_eq!(pid, worker_of[*user]);
            assert_eq!(session.name(), runs[*user][0].0);
            assert_eq!(session.get("turns"), Some(json!(TURNS + 1)));
        }
        assert_eq!(store.len(), USERS);
        // A lost session counts as live until it ends: here, its last handle goes.
        assert_eq!(pool.stats().live_sessions, USERS + hit.len());
        drop(lost_sessions);
        store.clear().await.expect("the store closes its sessions");
        assert!(store.is_empty());
        eventually(|| async { pool.stats().live_sessions == 0 }).await;
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_store_closes_its_least_recently_active_session() {
    within(120, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let pool = pool(&server, 1).await;
        let store: SessionStore<u32> = SessionStore::new(&pool, SessionOptions::new())
            .max_sessions(NonZeroUsize::new(2).unwrap());
        let mut objects = HashMap::new();
        for user in [1, 2] {
            let session = store.get_or_create(user).await;
            let object = session
                .create("Predict", "question -> answer", Map::new())
                .await
                .expect("create");
            objects.insert(user, object);
        }
        // User 1 comes back: user 2 is now the least recently active.
        let first = store.get_or_create(1).await;
        first
            .call(&objects[&1], question("Hello again?"))
            .await
            .expect("call");
        let second = store.get(&2).expect("user 2's session");
        let third = store.get_or_create(3).await;
        assert_eq!(store.len(), 2);
        assert_eq!(second.status(), SessionStatus::Closed, "evicted and closed");
        assert!(store.get(&2).is_none());
        assert!(is_unknown_object(&object_state(&pool, &objects[&2]).await));
        assert!(object_state(&pool, &objects[&1]).await.is_ok());
        assert_eq!(third.status(), SessionStatus::Open);
        // User 2 comes back to a new session.
        let again = store.get_or_create(2).await;
        assert_ne!(again.name(), second.name());
        assert_eq!(
            first.status(),
            SessionStatus::Closed,
            "user 1 was evicted in turn"
        );
        pool.shutdown().await;
    })
    .await;
}

/// The session's variables reach the Python code its calls run: here the code a
/// ProgramOfThought generates (run by the worker package's in-process interpreter) reads
/// `dspex_worker.session_state()`, and the mock LM answers the output step by what the code
/// printed. Two sessions on one worker see their own variables, and a variable set in Rust
/// between two calls is seen by the second.
#[tokio::test]
async fn python_code_in_a_sessions_calls_reads_its_variables() {
    use dspex::testing::Rule;
    const CODE: &str = "[[ ## reasoning ## ]]\nRead the session.\n\n[[ ## generated_code ## ]]\n```python\nimport dspex_worker\nSUBMIT({\"answer\": \"user=\" + dspex_worker.session_state().get(\"user\", \"nobody\")})\n```\n\n[[ ## completed ## ]]";
    let greeting = |who: &str| {
        Rule::contains(
            format!("\"answer\": \"user={who}\""),
            format!(
                "[[ ## reasoning ## ]]\nThe code read the session.\n\n[[ ## answer ## ]]\nHello, {who}\n\n[[ ## completed ## ]]"
            ),
        )
    };
    within(120, async {
        let server = MockLm::builder()
            .rule(greeting("ada"))
            .rule(greeting("bob"))
            .rule(greeting("cy"))
            .rule(greeting("nobody"))
            .rule(Rule::contains("[[ ## generated_code ## ]]", CODE))
            .start()
            .await
            .expect("the mock LM starts");
        let pool = pool(&server, 1).await;
        let mut kwargs = Map::new();
        kwargs.insert(
            "interpreter_factory".into(),
            json!("dspex_worker.exec_interpreter:ExecInterpreter"),
        );
        let ask = |session: Session| {
            let kwargs = kwargs.clone();
            async move {
                let pot = session
                    .create("ProgramOfThought", "question -> answer", kwargs)
                    .await
                    .expect("create");
                let out = session
                    .call(pot, question("Who is asking?"))
                    .await
                    .expect("the call answers");
                out["answer"].as_str().unwrap_or_default().to_string()
            }
        };
        let ada = pool.session_with(SessionOptions::new().var("user", "ada"));
        let bob = pool.session_with(SessionOptions::new().var("user", "bob"));
        let plain = pool.session(AffinityMode::StrictQueue);
        assert_eq!(ask(ada.clone()).await, "Hello, ada");
        assert_eq!(ask(bob.clone()).await, "Hello, bob");
        assert_eq!(ask(plain).await, "Hello, nobody");
        ada.set("user", "cy");
        assert_eq!(ask(ada.clone()).await, "Hello, cy");
        pool.shutdown().await;
    })
    .await;
}
