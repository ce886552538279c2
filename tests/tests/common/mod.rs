//! Helpers shared by the integration tests; a test file takes them with `mod common;`.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The DSPy fixture `name` from `shared/fixtures/dspy` (recorded from DSPy 3.4.1), parsed.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dspy")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// DSPy's two-step RAG program: the shape of the `program_state_rag` fixture.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) mod rag {
    use dspex::module::{ChainOfThought, Predict};
    use dspex::prelude::*;

    #[signature("question -> search_query")]
    pub(crate) struct GenerateQuery;

    #[signature("context: list[str], question -> answer")]
    pub(crate) struct Answer;

    /// `generate_query = ChainOfThought(GenerateQuery)`, then `answer = Predict(Answer)`.
    #[derive(Module)]
    pub(crate) struct Rag {
        pub(crate) generate_query: ChainOfThought<GenerateQuery>,
        pub(crate) answer: Predict<Answer>,
    }

    impl Rag {
        pub(crate) fn new() -> Self {
            Rag {
                generate_query: ChainOfThought::new(),
                answer: Predict::new(),
            }
        }
    }
}

/// The repository root.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project venv's Python (DSPy 3.4.1 and the bridge worker), created by `scripts/python-env`
/// if needed (fails loudly if it cannot), or the interpreter in `DSPEX_BRIDGE_PYTHON`.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) fn venv_python() -> PathBuf {
    if let Some(python) = std::env::var_os("DSPEX_BRIDGE_PYTHON") {
        return PathBuf::from(python);
    }
    let out = Command::new(repo_root().join("scripts/python-env"))
        .output()
        .expect("scripts/python-env runs");
    assert!(
        out.status.success(),
        "scripts/python-env failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .last()
        .expect("python-env prints the python path")
        .trim();
    repo_root().join(path)
}

/// Setup shared by the tests that run the real bridge worker against the mock LM.
#[allow(dead_code)] // Not every test file that takes `common` uses it.
pub(crate) mod bridge {
    use dspex::bridge::protocol::{LmConfig, Op};
    use dspex::bridge::{Pool, PoolBuilder};
    use dspex::lm::LM;
    use dspex::testing::MockLmServer;
    use std::future::Future;
    use std::path::PathBuf;
    use std::time::Duration;

    /// One worker with generous timeouts, DSPy configured to send its LM calls over the bridge.
    pub(crate) fn pool(python: PathBuf) -> PoolBuilder {
        Pool::builder()
            .python(python)
            .workers(1)
            .start_timeout(Duration::from_secs(60))
            .call_timeout(Duration::from_secs(60))
            .init(Op::Configure {
                lm: LmConfig::bridge("openai/mock"),
                adapter: None,
            })
    }

    /// An uncached client of the mock server.
    pub(crate) fn lm(server: &MockLmServer) -> LM {
        LM::builder("openai/mock")
            .api_base(server.api_base())
            .api_key("sk-test")
            .cache(false)
            .build()
            .expect("the LM builds")
    }

    /// `fut`, failing the test instead of hanging past `secs`.
    pub(crate) async fn within<F: Future>(secs: u64, fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(secs), fut)
            .await
            .unwrap_or_else(|_| panic!("the test did not finish within {secs} s (a hang)"))
    }
}
