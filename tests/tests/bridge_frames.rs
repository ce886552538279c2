//! MessagePack frames through the real worker (`python -m dspex_worker`, DSPy 3.4.1): a 1 MiB
//! input and a 1 MiB output of a bridged `Predict` (its LM call and the LM's answer are as large)
//! round trip intact with MessagePack on (plain and forked workers), off, and with a worker that
//! does not announce MessagePack (as an older `dspex_worker`; one that reads JSON only and exits
//! on a MessagePack frame), and the frames that crossed say which encoding they used.

mod common;

use common::bridge::{lm, pool, within};
use common::venv_python;
use dspex::Program;
use dspex::bridge::BridgedModule;
use dspex::bridge::protocol::DEFAULT_MSGPACK_THRESHOLD;
use dspex::settings::{Settings, with_settings};
use dspex::testing::{MockLm, Rule};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
struct Question {
    question: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    answer: String,
}

/// About `bytes` of text with what JSON must escape (quotes, backslashes, newlines, control
/// characters) and non-ASCII characters, so both encoders do real work; `seed` varies it.
fn text(bytes: usize, seed: &str) -> String {
    let line = format!("{seed}: \"quoted\" back\\slash tab\there é ü 漢字 — \u{1}\n");
    let mut out = String::with_capacity(bytes + line.len());
    let mut i = 0u64;
    while out.len() < bytes {
        out.push_str(&i.to_string());
        out.push(' ');
        out.push_str(&line);
        i += 1;
    }
    out.trim().to_string()
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// MessagePack on (the default threshold), plain workers.
    Msgpack,
    /// MessagePack on, workers forked from the fork server.
    MsgpackForked,
    /// `msgpack_threshold(None)`.
    Off,
    /// A worker that announces JSON only.
    OldWorker,
}

#[tokio::test]
async fn one_mib_in_and_out_through_a_real_dspy_worker_in_every_encoding() {
    let python = venv_python();
    within(400, async {
        let question = text(1 << 20, "question");
        let answer = text(1 << 20, "answer");
        let completion = format!("[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]");
        // The rule matches only when the whole question reached the LM intact.
        let server = MockLm::builder()
            .rule(Rule::contains(question.clone(), completion))
            .start()
            .await
            .expect("the mock LM starts");
        for mode in [
            Mode::Msgpack,
            Mode::Off,
            Mode::OldWorker,
            Mode::MsgpackForked,
        ] {
            let mut builder = pool(python.clone());
            builder = match mode {
                Mode::Msgpack => builder,
                Mode::MsgpackForked => builder.fork_server(true),
                Mode::Off => builder.msgpack_threshold(None),
                Mode::OldWorker => builder.env("DSPEX_WORKER_ENCODINGS", "json"),
            };
            let pool = builder
                .build()
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: the pool starts: {e}"));
            let got = with_settings(Settings::new().lm(lm(&server)), async {
                let predict = BridgedModule::<Question, Answer>::create(
                    &pool,
                    "Predict",
                    "question -> answer",
                )
                .await?;
                predict
                    .forward(Question {
                        question: question.clone(),
                    })
                    .await
            })
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: the 1 MiB call answers: {e}"));
            assert!(
                got.answer == answer,
                "{mode:?}: the 1 MiB answer came back changed ({} bytes, want {})",
                got.answer.len(),
                answer.len()
            );
            let info = &pool.stats().workers[0];
            match mode {
                Mode::Msgpack | Mode::MsgpackForked => {
                    assert_eq!(
                        info.msgpack_threshold,
                        Some(DEFAULT_MSGPACK_THRESHOLD),
                        "{mode:?}"
                    );
                    // Out: the call (1 MiB input) and the LM's answer; in: the LM call (its
                    // prompt holds the question) and the response (1 MiB output).
                    assert!(info.msgpack_sent >= 2, "{mode:?}: {info:?}");
                    assert!(info.msgpack_received >= 2, "{mode:?}: {info:?}");
                }
                Mode::Off | Mode::OldWorker => {
                    assert_eq!(info.msgpack_threshold, None, "{mode:?}");
                    assert_eq!(
                        (info.msgpack_sent, info.msgpack_received),
                        (0, 0),
                        "{mode:?}"
                    );
                }
            }
            let report = pool.shutdown().await;
            assert_eq!(report.graceful, 1, "{mode:?}: {report:?}");
        }
    })
    .await;
}
