//! The runnable examples run, on the mock LM, and print what their docs promise. `cargo test`
//! builds this package's examples before running its tests; they are found next to this test's
//! binary (`target/<profile>/examples/`).

use std::path::PathBuf;
use std::process::Command;

fn run(example: &str) -> String {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path: PathBuf = dir.join("examples").join(example);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p dspex-examples`, which builds the examples",
        path.display()
    );
    let out = Command::new(&path)
        .env_remove("DSPEX_LM")
        .env_remove("DSPEX_API_BASE")
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{example} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn quickstart_answers_with_chain_of_thought() {
    let out = run("quickstart");
    assert!(
        out.contains("ChainOfThought<FactoidQA> on openai/mock:"),
        "{out}"
    );
    assert!(out.contains("  reasoning:  "), "{out}");
}

#[test]
fn react_agent_uses_both_tools_then_finishes() {
    let out = run("react_agent");
    assert!(out.contains("observation: 391"), "{out}");
    assert!(out.contains("observation: Tokyo"), "{out}");
    assert!(out.contains("answer:    391; Tokyo"), "{out}");
}

#[test]
fn multimodal_agent_calls_tools_natively_and_returns_code() {
    let out = run("multimodal_agent");
    assert!(
        out.contains("image:   chart_sketch.png (image/png"),
        "{out}"
    );
    assert!(out.contains("history: 1 earlier turn(s)"), "{out}");
    // Both native calls of the first turn ran, in order, and their results came back.
    assert!(
        out.contains(
            "call 0:\n  thought:     The history says the chart is for ACME: get its palette and its bar-chart spec.\n  tool call:   brand_palette({\"company\":\"ACME\"})\n  observation: [\"#0B3D91\",\"#FC3D21\",\"#F2F2F2\"]"
        ),
        "{out}"
    );
    assert!(
        out.contains("call 1:\n  tool call:   figure_spec({\"company\":\"ACME\",\"kind\":\"bar chart\"})\n  observation: {\"width\":8,\"height\":4.5,\"dpi\":150}"),
        "{out}"
    );
    assert!(out.contains("  tool call:   finish({})"), "{out}");
    // The code came back as Code<lang::Python>, out of its fence.
    let code = out
        .split_once("code (Code<lang::Python>):\n")
        .map(|(_, code)| code)
        .expect("the code");
    assert!(
        code.starts_with("import matplotlib.pyplot as plt\n"),
        "{out}"
    );
    assert!(code.contains("figsize=(8, 4.5), dpi=150"), "{out}");
    assert!(!code.contains("```"), "{out}");
}

#[test]
fn optimize_improves_the_score_and_saves() {
    let out = run("optimize");
    assert!(out.contains("before optimizing:       33.33"), "{out}");
    assert!(out.contains("after BootstrapFewShot: 100.00"), "{out}");
    assert!(out.contains("saved the best program"), "{out}");
    let report = out
        .lines()
        .find_map(|l| l.strip_prefix("its report (open it in a browser): "))
        .expect("the report's path");
    let page = std::fs::read_to_string(report).unwrap();
    assert!(page.contains("<h1>MIPROv2 report</h1>"), "{page}");
}

#[test]
fn rag_retrieves_over_two_hops_compiles_and_saves() {
    let out = run("rag");
    assert!(out.contains("indexed 52 passages"), "{out}");
    assert!(
        out.contains("12/16 by the question alone (k=4), 8/8 on the dev set by two hops"),
        "{out}"
    );
    assert!(out.contains("before compiling:        50.00"), "{out}");
    assert!(out.contains("after BootstrapFewShot: 100.00 (generate_query[0]: 2 demos, generate_query[1]: 2 demos, generate_answer.predict: 2 demos)"), "{out}");
    assert!(out.contains("A: Tesk"), "{out}");
    let saved = out
        .lines()
        .find_map(|l| l.strip_prefix("saved the compiled program to "))
        .expect("the saved path");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    assert_eq!(
        state["generate_query[1]"]["demos"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// With no provider configured (the environment emptied of keys), every protocol answers from
/// the mock server, typed, with its tokens.
#[test]
fn providers_run_one_program_through_every_protocol() {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let out = Command::new(dir.join("examples").join("providers"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in [
        "openai/gpt-4o-mini (mock",
        "responses:openai/gpt-4o-mini (mock",
        "azure/gpt-4o-mini (mock",
        "anthropic/claude-sonnet-4-5 (mock",
        "gemini/gemini-2.5-flash (mock",
        "groq/llama-3.3-70b-versatile (mock",
    ] {
        assert!(stdout.contains(entry), "{entry} missing:\n{stdout}");
    }
    assert!(!stdout.contains("failed:"), "{stdout}");
    assert_eq!(stdout.matches("  answer:    ").count(), 6, "{stdout}");
    // Listed models are priced from the published table; the mock's answers cost something.
    assert!(stdout.contains("cost:      $"), "{stdout}");
}

#[test]
fn gepa_improves_two_predictors_from_feedback_and_writes_its_report() {
    let out = run("gepa");
    assert!(
        out.contains("before GEPA:   0.00 on 6 validation examples"),
        "{out}"
    );
    assert!(out.contains("after GEPA:  100.00"), "{out}");
    assert!(
        out.contains("extract: \"Pull out the two numbers. Write the two numbers as digits, separated by a comma.\""),
        "{out}"
    );
    assert!(
        out.contains("solve: \"Add the numbers. Answer with the sum as a bare number.\""),
        "{out}"
    );
    let report = out
        .lines()
        .find_map(|l| l.strip_prefix("its report (open it in a browser): "))
        .expect("the report's path");
    let page = std::fs::read_to_string(report).unwrap();
    for section in [
        "<h1>GEPA report</h1>",
        "id=\"pareto\"",
        "id=\"lineage\"",
        "id=\"examples\"",
    ] {
        assert!(page.contains(section), "{section} in {page}");
    }
    // The run folder holds the state a restart resumes from.
    let dir = std::path::Path::new(report).parent().unwrap();
    assert!(dir.join("gepa_state.json").is_file());
}

#[test]
fn team_cache_second_process_pays_nothing_and_the_down_endpoint_fails_no_call() {
    let out = run("team_cache");
    let (first, second) = out
        .split_once("== process 2:")
        .expect("both processes reported");
    // The first process paid one call per example; the down endpoint refused some of them,
    // which went to the healthy endpoints (the same score as the second run: no call failed).
    assert!(first.contains("== process 1: 40 LM calls paid"), "{out}");
    assert!(first.contains("score:    85.0 on 40 examples"), "{out}");
    assert!(first.contains("(the last one answers 503)"), "{out}");
    let down = first
        .lines()
        .filter(|l| l.starts_with("endpoint:"))
        .nth(2)
        .expect("three endpoints");
    assert!(down.contains("served   0"), "{out}");
    assert!(down.ends_with("ejected"), "{out}");
    assert!(!down.contains("failed 0,"), "{out}");
    // The second process found every answer in Redis.
    assert!(second.starts_with(" 0 LM calls paid"), "{out}");
    assert!(second.contains("score:    85.0 on 40 examples"), "{out}");
    assert!(second.contains("cache:    40 answers from Redis"), "{out}");
}

#[test]
fn python_bridge_streams_routes_hybrid_steps_keeps_sessions_and_falls_back() {
    let out = run("python_bridge");
    assert!(out.contains("(DSPy 3.4.1)"), "{out}");
    // A bridged ChainOfThought streamed its fields, then its prediction.
    assert!(out.contains("    [reasoning] "), "{out}");
    assert!(out.contains("    [answer] "), "{out}");
    assert!(out.contains("  final answer after "), "{out}");
    // The hybrid program's steps: ChainOfThought natively, ProgramOfThought in DSPy.
    assert!(
        out.contains("  plan     Native\n  compute  Bridged\n  explain  Native\n"),
        "{out}"
    );
    assert!(out.contains("\"compute.code_generate.predict\""), "{out}");
    // Each user's turns stayed in one session on one worker.
    let turns: Vec<&str> = out.lines().filter(|l| l.contains(" turn ")).collect();
    assert_eq!(turns.len(), 4, "{out}");
    for user in ["alice", "bob"] {
        let places: Vec<&str> = turns
            .iter()
            .filter(|l| l.trim_start().starts_with(user))
            .map(|l| {
                l.split(" turn ")
                    .nth(1)
                    .unwrap_or("")
                    .split_once(" on ")
                    .map_or("", |(_, p)| p)
            })
            .map(|p| p.split("):").next().unwrap_or(""))
            .collect();
        assert_eq!(places.len(), 2, "{out}");
        assert_eq!(places[0], places[1], "{user} moved: {out}");
    }
    assert!(out.contains("  store cleared: 0 sessions"), "{out}");
    // Once the pool is shut down, the routed module answers natively.
    assert!(
        out.contains("created on Bridged, served by Native (1 fallback to native)"),
        "{out}"
    );
}
