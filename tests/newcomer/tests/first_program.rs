//! The README's first program, built as a user's crate with only `dspex` and `tokio` as
//! dependencies (`src/main.rs`), runs against dspex's mock LM server; and the README shows exactly
//! that program and those dependencies.

use dspex::testing::MockLm;
use std::process::Command;

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    std::fs::read_to_string(path).expect("the README")
}

#[test]
fn the_readme_shows_this_program_and_these_dependencies() {
    let readme = readme();
    let program = include_str!("../src/main.rs");
    assert!(
        readme.contains(&format!("```rust,no_run\n{program}```")),
        "the README's first program differs from tests/newcomer/src/main.rs"
    );
    let manifest = include_str!("../Cargo.toml");
    let tokio = manifest
        .lines()
        .find(|l| l.starts_with("tokio = "))
        .expect("tokio in Cargo.toml");
    assert!(readme.contains(&format!("[dependencies]\ndspex = \"0.1\"\n{tokio}\n")));
    // Nothing else is a dependency of the program.
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("the dependencies table");
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name))
        .collect();
    assert_eq!(names, ["dspex", "tokio"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_program_runs_against_the_mock_lm() {
    let server = MockLm::start().await.expect("the mock LM starts");
    let base = server.api_base();
    let cache = std::env::temp_dir().join(format!("dspex-newcomer-{}", std::process::id()));
    let cache_for_run = cache.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dspex-newcomer"))
            .env("OPENAI_API_BASE", base)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env("DSPEX_CACHE_DIR", &cache_for_run)
            .output()
            .expect("the program runs")
    })
    .await
    .expect("join");
    let _ = std::fs::remove_dir_all(&cache);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        ["Positive (", "Negative (", "Neutral ("]
            .iter()
            .any(|s| first.starts_with(s)),
        "{stdout}"
    );
    assert!(stdout.contains("reasoning: "), "{stdout}");
    assert_eq!(server.stats().total, 1);
}
