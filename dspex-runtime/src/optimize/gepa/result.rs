//! [`GepaResult`]: everything a run found (DSPy's `DspyGEPAResult`), serializable for reports.

use super::state::GepaState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A run's detailed results (DSPy's `DspyGEPAResult.to_dict()`): every candidate with its
/// parents, its per-instance validation scores, the Pareto front per validation instance, the
/// budget spent when each candidate was found, and the best candidate. Serialize it with serde
/// for a report tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GepaResult {
    /// The components (named predictors), in the program's order.
    pub components: Vec<String>,
    /// Every candidate: each component's instructions. Candidate 0 is the student's.
    pub candidates: Vec<BTreeMap<String, String>>,
    /// Each candidate's parents (`[null]` for the seed; two for a merge).
    pub parents: Vec<Vec<Option<usize>>>,
    /// Each candidate's mean validation score.
    pub val_aggregate_scores: Vec<f64>,
    /// Each candidate's score on every validation instance.
    pub val_subscores: Vec<Vec<f64>>,
    /// For each validation instance, the candidates with the best score on it (ascending).
    pub per_val_instance_best_candidates: Vec<Vec<usize>>,
    /// The metric calls spent before each candidate was found.
    pub discovery_eval_counts: Vec<usize>,
    /// With `track_best_outputs`: per validation instance, `(candidate, prediction)` of the
    /// candidates on its front.
    pub best_outputs_valset: Option<Vec<Vec<(usize, serde_json::Value)>>>,
    /// Metric calls made in all.
    pub total_metric_calls: usize,
    /// Full validation evaluations made.
    pub num_full_val_evals: usize,
    /// Where the run's state was saved, if anywhere.
    pub log_dir: Option<PathBuf>,
    /// The seed.
    pub seed: u64,
    /// The candidate with the highest mean validation score (the first of equals).
    pub best_idx: usize,
}

impl GepaResult {
    pub(crate) fn from_state(state: &GepaState, log_dir: Option<PathBuf>, seed: u64) -> Self {
        let candidates = state
            .candidates
            .iter()
            .map(|texts| {
                state
                    .components
                    .iter()
                    .cloned()
                    .zip(texts.iter().cloned())
                    .collect()
            })
            .collect();
        GepaResult {
            components: state.components.clone(),
            candidates,
            parents: state.parents.clone(),
            val_aggregate_scores: state.aggregate_scores(),
            val_subscores: state.val_scores.clone(),
            per_val_instance_best_candidates: state
                .pareto_programs
                .iter()
                .map(|f| f.iter().copied().collect())
                .collect(),
            discovery_eval_counts: state.discovery.clone(),
            best_outputs_valset: state.best_outputs.clone(),
            total_metric_calls: state.total_evals,
            num_full_val_evals: state.num_full_evals,
            log_dir,
            seed,
            best_idx: state.best_index(),
        }
    }

    /// The instructions of the best candidate, by component.
    pub fn best_candidate(&self) -> &BTreeMap<String, String> {
        &self.candidates[self.best_idx]
    }

    /// The best score reached on each validation instance.
    pub fn highest_score_achieved_per_val_task(&self) -> Vec<f64> {
        self.per_val_instance_best_candidates
            .iter()
            .enumerate()
            .map(|(val_id, front)| {
                front
                    .first()
                    .map_or(f64::NEG_INFINITY, |&c| self.val_subscores[c][val_id])
            })
            .collect()
    }
}

/// What [`GEPA::compile_with_results`](super::GEPA::compile_with_results) returns: the optimized
/// program, and with `track_stats` the detailed results (DSPy's `program.detailed_results`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GepaOutcome<P> {
    /// The best candidate built into the student.
    pub program: P,
    /// The run's detailed results, when `track_stats` is set.
    pub detailed_results: Option<GepaResult>,
}
