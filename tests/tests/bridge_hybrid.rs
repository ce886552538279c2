//! Hybrid programs with the real worker (`python -m dspex_worker`, DSPy 3.4.1) against dspex's
//! mock LM: a multi-module DSPy program saved by DSPy (`tests/python/dspy_hybrid.py`) is loaded
//! by dspex as one `HybridProgram` whose ChainOfThought steps run natively and whose
//! ProgramOfThought step runs in the pool; dspex's save loads back into the DSPy program with
//! the same state.

mod common;

use common::bridge::{lm, within};
use common::venv_python;
use dspex::bridge::{HybridProgram, HybridSpec, Pool, Route, Router};
use dspex::settings::{Settings, with_settings};
use dspex::testing::{MockLm, Rule};
use dspex::{Example, Module, Program};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `tests/python/dspy_hybrid.py` with `args`; its stdout on success.
fn dspy_script(python: &Path, args: &[&Path]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/dspy_hybrid.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("the DSPy script runs");
    assert!(
        out.status.success(),
        "dspy_hybrid.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The code ProgramOfThought's `code_generate` step gets from the mock LM: DSPy's ChatAdapter
/// format, code that SUBMITs the result.
const GENERATED: &str = "[[ ## reasoning ## ]]\nMultiply six by seven.\n\n[[ ## generated_code ## ]]\n```python\nproduct = 6 * 7\nSUBMIT({\"result\": product})\n```\n\n[[ ## completed ## ]]";

fn spec() -> HybridSpec {
    let mut pot = Map::new();
    pot.insert(
        "interpreter_factory".into(),
        json!("dspex_worker.exec_interpreter:ExecInterpreter"),
    );
    HybridSpec::new()
        .step("plan", "ChainOfThought", "question -> plan")
        .step_with(
            "compute",
            "ProgramOfThought",
            "question, plan -> result",
            pot,
        )
        .step("explain", "ChainOfThought", "question, result -> answer")
}

#[tokio::test]
async fn a_dspy_saved_program_runs_hybrid_and_saves_what_dspy_loads() {
    let python = venv_python();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dspy_file = dir.path().join("dspy_program.json");
    let dspex_file = dir.path().join("dspex_program.json");
    dspy_script(&python, &[Path::new("save"), &dspy_file]);

    within(240, async {
        let server = MockLm::builder()
            .rule(Rule::contains("[[ ## generated_code ## ]]", GENERATED))
            .start()
            .await
            .expect("the mock LM starts");
        let pool = common::bridge::pool(python.clone())
            .build()
            .await
            .expect("the pool starts");
        let router = Router::with_pool(pool.clone());
        let mut program = HybridProgram::build(&router, spec())
            .await
            .expect("the program builds");
        assert_eq!(
            program.routes(),
            [
                ("plan", Route::Native),
                ("compute", Route::Bridged),
                ("explain", Route::Native)
            ]
        );
        program.load(&dspy_file).await.expect("DSPy's save loads");

        // The DSPy-saved parameters reached the native steps…
        let plan = program.step("plan").unwrap().as_native().unwrap();
        let (name, params) = &plan.named_predictors()[0];
        assert_eq!(name, "predict");
        assert_eq!(
            params.signature.instructions(),
            "Write a one-line plan to compute the answer."
        );
        assert_eq!(params.demos.len(), 1);
        let explain = program.step("explain").unwrap().as_native().unwrap();
        assert_eq!(explain.named_predictors()[0].1.demos.len(), 2);
        // The native steps' predictors are visible to dspex's optimizers.
        let names: Vec<_> = program
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["plan.predict", "explain.predict"]);
        // … and the bridged one, inside the worker.
        let compute = program.step("compute").unwrap();
        let state = compute.save_state().await.expect("the worker saves");
        assert_eq!(
            state["code_generate.predict"]["demos"][0]["plan"],
            json!("Add 2 and 3.")
        );

        let out = with_settings(
            Settings::new().lm(lm(&server)),
            program.forward(Example::new().with("question", "What is 6 * 7?")),
        )
        .await
        .expect("the hybrid program answers");
        assert!(
            out.get_str("answer").is_some_and(|a| !a.is_empty()),
            "{out:?}"
        );
        // Which route served each step: the CoT steps natively, ProgramOfThought in the pool.
        assert_eq!(
            program.routes(),
            [
                ("plan", Route::Native),
                ("compute", Route::Bridged),
                ("explain", Route::Native)
            ]
        );
        for (step, native, bridged) in [("plan", 1, 0), ("compute", 0, 1), ("explain", 1, 0)] {
            let stats = program.step(step).unwrap().stats();
            assert_eq!((stats.native, stats.bridged), (native, bridged), "{step}");
        }
        assert_eq!(router.stats().native, 2);
        assert_eq!(router.stats().bridged, 1);
        // Native plan, PoT's code_generate (the canned code ran: no regenerate call) and
        // generate_output, native explain: four LM calls, all answered by the mock.
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 4);

        program.save(&dspex_file).await.expect("dspex saves");
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&dspex_file).unwrap())
            .expect("dspex's save is JSON");
        let keys: Vec<_> = saved.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "plan.predict",
                "compute.code_generate.predict",
                "compute.code_regenerate.predict",
                "compute.generate_output.predict",
                "explain.predict",
                "metadata"
            ]
        );
        shutdown(&pool).await;
    })
    .await;

    // DSPy loads dspex's save into the same program, with the state its own save had.
    let checked = dspy_script(&python, &[Path::new("check"), &dspy_file, &dspex_file]);
    assert!(checked.starts_with("OK "), "{checked}");
    assert!(
        checked.contains("compute.code_generate.predict"),
        "{checked}"
    );
}

async fn shutdown(pool: &Pool) {
    let report = pool.shutdown().await;
    assert_eq!(report.graceful, 1, "{report:?}");
}
