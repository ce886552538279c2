//! The fuzz targets' checks (`dspex_runtime::__fuzz`) over every input committed under
//! `fuzz/regressions/<target>/` — each one crashed or hung a target once and is fixed now — and
//! over every target's seed corpus (built from DSPy's fixtures and the mock server's answers),
//! so a plain `cargo test` keeps the fixes and the invariants.

mod common;

use dspex_runtime::__fuzz::{TARGETS, seeds, target};
use std::path::PathBuf;

fn regressions() -> PathBuf {
    common::repo_root().join("fuzz/regressions")
}

#[test]
fn every_regression_input_passes_its_target() {
    let dir = regressions();
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions exists") {
        let folder = entry.expect("a readable entry").path();
        if !folder.is_dir() {
            continue;
        }
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a target's folder name")
            .to_string();
        let run =
            target(&name).unwrap_or_else(|| panic!("fuzz/regressions/{name} names no fuzz target"));
        for input in std::fs::read_dir(&folder).expect("a readable folder") {
            let path = input.expect("a readable entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("a readable input");
            eprintln!("replaying {}", path.display());
            run(&bytes);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs under {}", dir.display());
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let targets = common::repo_root().join("fuzz/fuzz_targets");
    for (name, _) in TARGETS {
        assert!(
            targets.join(format!("{name}.rs")).is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
    }
}

#[test]
fn every_seed_passes_its_target() {
    let fixtures = common::repo_root().join("../shared/fixtures/dspy");
    let mut all = seeds::all(&fixtures).expect("the seeds build");
    for name in ["bm25_open", "embeddings_open"] {
        all.extend(seeds::index_seeds(name).into_iter().map(|s| (name, s)));
    }
    for (name, _) in TARGETS {
        assert!(
            all.iter().any(|(t, _)| t == name),
            "no seeds for target {name}"
        );
    }
    for (name, input) in &all {
        let run = target(name).expect("a seed's target exists");
        run(input);
    }
}
