//! `PoolBuilder::read_only_fs` (Landlock) with the real worker (`python -m dspex_worker`, DSPy
//! 3.4.1), on this machine, whose kernel has Landlock: code in a worker cannot write outside its
//! writable paths (`PermissionError`) but can inside them and in its temporary directory, reads
//! still work, and a DSPy module still answers through the pool's LM; plain and forked workers.
//! Where the kernel cannot (simulated by a stand-in worker whose check refuses) or a writable path
//! does not exist, the pool's start fails with `FilesystemIsolation`.

mod common;

use common::bridge::{pool, within};
use common::venv_python;
use dspex::bridge::protocol::Op;
use dspex::bridge::{BridgeError, Pool};
use dspex::testing::MockLm;
use serde_json::{Map, json};
use std::path::PathBuf;
use std::time::Duration;

/// A fresh directory under the target's temporary directory (not under /tmp, where the pool
/// makes its workers' temporary directory).
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("read_only_fs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory");
    dir
}

#[tokio::test]
async fn read_only_fs_workers_write_only_where_allowed_and_still_answer() {
    let python = venv_python();
    let helpers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python");
    within(300, async {
        let server = MockLm::builder().start().await.expect("the mock LM starts");
        let probe = Op::Create {
            module: "Predict".into(),
            signature: "question -> answer".into(),
            instructions: None,
            fields: Map::new(),
            kwargs: {
                let mut m = Map::new();
                m.insert("tools".into(), json!(["dspex_fs_probe:probe"]));
                m
            },
            session: None,
        };
        for (read_only, fork_server) in [(false, false), (true, false), (true, true)] {
            let tag = format!("{read_only}-{fork_server}");
            let outside = fresh_dir(&format!("outside-{tag}"));
            let inside = fresh_dir(&format!("inside-{tag}"));
            let readable = outside.join("readable.txt");
            std::fs::write(&readable, "hello").unwrap();
            let pool = pool(python.clone())
                .read_only_fs(read_only)
                .writable_path(&inside)
                .fork_server(fork_server)
                .env("PYTHONPATH", helpers.to_string_lossy())
                .env(
                    "DSPEX_FS_PROBE_OUTSIDE",
                    outside.join("new.txt").to_string_lossy(),
                )
                .env(
                    "DSPEX_FS_PROBE_INSIDE",
                    inside.join("new.txt").to_string_lossy(),
                )
                .env("DSPEX_FS_PROBE_READ", readable.to_string_lossy())
                .build()
                .await
                .unwrap_or_else(|e| panic!("the pool starts (read_only_fs {read_only}): {e}"));
            let err = pool.request(probe.clone()).await.unwrap_err();
            let message = err.remote().map(|r| r.message.clone()).unwrap_or_default();
            let want = if read_only {
                "FS-PROBE: outside=PermissionError; inside=ok; read=ok; tmp=ok"
            } else {
                "FS-PROBE: outside=ok; inside=ok; read=ok; tmp=ok"
            };
            assert!(message.contains(want), "fork server {fork_server}: {err}");
            assert_eq!(
                outside.join("new.txt").exists(),
                !read_only,
                "fork server {fork_server}"
            );
            assert!(inside.join("new.txt").exists(), "fork server {fork_server}");
            // A DSPy module runs a call, its LM call answered over the bridge.
            let answer = common::bridge::ask_bridged_predict(&pool, &server)
                .await
                .expect("a bridged Predict answers under read_only_fs");
            assert!(answer["answer"].is_string(), "{answer}");
            pool.shutdown().await;
            let _ = std::fs::remove_dir_all(&outside);
            let _ = std::fs::remove_dir_all(&inside);
        }
    })
    .await;
}

/// Where the kernel has no Landlock (simulated: a "worker" whose check refuses, as the real one
/// does on such a kernel), `read_only_fs` fails the pool's start with a typed error naming what it
/// needs, and no worker is started.
#[tokio::test]
async fn read_only_fs_refused_by_the_kernel_fails_the_start_typed() {
    within(60, async {
        let refuse = "import sys\n\
                      assert '--check-read-only-fs' in sys.argv and '--read-only-fs' in sys.argv, sys.argv\n\
                      sys.stderr.write('cannot make the file system read-only: landlock_create_ruleset: Function not implemented (errno 38)\\n')\n\
                      sys.exit(4)\n";
        let err = Pool::builder()
            .python("python3")
            .worker_args(["-c", refuse])
            .workers(1)
            .read_only_fs(true)
            .start_timeout(Duration::from_secs(20))
            .build()
            .await
            .unwrap_err();
        match &err {
            BridgeError::FilesystemIsolation { reason } => {
                assert!(reason.contains("Function not implemented"), "{reason}");
                assert!(reason.contains("exit status: 4"), "{reason}");
            }
            other => panic!("expected FilesystemIsolation, got {other:?}"),
        }
        assert!(err.to_string().contains("Landlock"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_writable_path_that_does_not_exist_fails_the_start_typed() {
    within(60, async {
        let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-dir/at-all");
        let err = Pool::builder()
            .python("python3")
            .worker_args(["-c", "raise SystemExit('never started')"])
            .workers(1)
            .read_only_fs(true)
            .writable_path(&missing)
            .build()
            .await
            .unwrap_err();
        match &err {
            BridgeError::FilesystemIsolation { reason } => {
                assert!(reason.contains("no-such-dir/at-all"), "{reason}");
            }
            other => panic!("expected FilesystemIsolation, got {other:?}"),
        }
    })
    .await;
}
