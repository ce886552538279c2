//! The run's state (gepa's `GEPAState`): every candidate with its parents and per-instance
//! validation scores, the Pareto front per validation instance, the budget used, and the
//! round-robin position of each candidate. It is plain data and saves to `log_dir` as JSON, so
//! a killed run continues from it.
//!
//! Program indices in a front are kept in a [`BTreeSet`], so they iterate in ascending order.
//! CPython iterates a `set` of small ints in slot order, which is ascending while every index is
//! smaller than the set's table (8 slots up to 4 members, 32 up to 20, …); gepa's random
//! choices over fronts therefore match DSPy's while the run has fewer than 9 candidates, and
//! may differ beyond (see the module docs of [`super`]).

use crate::pycompat::intset::PyIntSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One candidate: a text per component, in the order of [`GepaState::components`].
pub(crate) type Texts = Vec<String>;

/// gepa's `GEPAState` for the `instance` frontier, with full-valset evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GepaState {
    /// The component names (the named predictors), in the program's order.
    pub components: Vec<String>,
    /// Every candidate's texts; candidate 0 is the seed.
    pub candidates: Vec<Texts>,
    /// Each candidate's parents (`[None]` for the seed).
    pub parents: Vec<Vec<Option<usize>>>,
    /// Each candidate's score on every validation instance.
    pub val_scores: Vec<Vec<f64>>,
    /// The best score seen on each validation instance.
    pub pareto_best: Vec<f64>,
    /// The candidates with that best score, per validation instance.
    pub pareto_programs: Vec<BTreeSet<usize>>,
    /// Per candidate, the component round-robin updates next.
    pub next_component: Vec<usize>,
    /// The iteration (gepa's `state.i`, -1 before the first).
    pub i: i64,
    /// Full validation evaluations made.
    pub num_full_evals: usize,
    /// Metric calls made (gepa's `total_num_evals`).
    pub total_evals: usize,
    /// The metric calls made before each candidate was found.
    pub discovery: Vec<usize>,
    /// With `track_best_outputs`: per validation instance, the outputs of the candidates on
    /// its front, as `(candidate, prediction)`.
    pub best_outputs: Option<Vec<Vec<(usize, serde_json::Value)>>>,
}

impl GepaState {
    /// The state after the seed candidate's full validation evaluation.
    pub(crate) fn new(
        components: Vec<String>,
        seed: Texts,
        seed_scores: Vec<f64>,
        outputs: Option<Vec<serde_json::Value>>,
    ) -> Self {
        let n = seed_scores.len();
        GepaState {
            components,
            candidates: vec![seed],
            parents: vec![vec![None]],
            pareto_best: seed_scores.clone(),
            pareto_programs: (0..n).map(|_| BTreeSet::from([0])).collect(),
            val_scores: vec![seed_scores],
            next_component: vec![0],
            i: -1,
            num_full_evals: 1,
            total_evals: n,
            discovery: vec![0],
            best_outputs: outputs.map(|o| o.into_iter().map(|v| vec![(0, v)]).collect()),
        }
    }

    /// Each candidate's mean validation score (gepa's `program_full_scores_val_set`; `-inf`
    /// for an empty valset).
    pub(crate) fn aggregate_scores(&self) -> Vec<f64> {
        self.val_scores.iter().map(|s| mean(s)).collect()
    }

    /// Adds an evaluated candidate (gepa's `update_state_with_new_program`) and returns its
    /// index. `discovery` is the budget used before its full evaluation.
    pub(crate) fn add_candidate(
        &mut self,
        texts: Texts,
        parents: &[usize],
        scores: Vec<f64>,
        outputs: Option<Vec<serde_json::Value>>,
        discovery: usize,
    ) -> usize {
        let idx = self.candidates.len();
        self.candidates.push(texts);
        self.discovery.push(discovery);
        let next = parents
            .iter()
            .map(|&p| self.next_component[p])
            .max()
            .unwrap_or(0);
        self.next_component.push(next);
        self.parents
            .push(parents.iter().map(|&p| Some(p)).collect());
        for (val_id, &score) in scores.iter().enumerate() {
            let prev = self.pareto_best[val_id];
            let output = outputs.as_ref().and_then(|o| o.get(val_id)).cloned();
            if score > prev {
                self.pareto_best[val_id] = score;
                self.pareto_programs[val_id] = BTreeSet::from([idx]);
                if let (Some(best), Some(output)) = (self.best_outputs.as_mut(), output) {
                    best[val_id] = vec![(idx, output)];
                }
            } else if score == prev {
                self.pareto_programs[val_id].insert(idx);
                if let (Some(best), Some(output)) = (self.best_outputs.as_mut(), output) {
                    best[val_id].push((idx, output));
                }
            }
        }
        self.val_scores.push(scores);
        idx
    }

    /// Whether a state read from disk is one a run could have made for `components` and a
    /// valset of `val` instances (so nothing indexes out of bounds later); what is wrong if not.
    pub(crate) fn check(&self, components: &[String], val: usize) -> Result<(), String> {
        if self.components != components {
            return Err(format!(
                "the saved run optimized the components {:?}, this program has {:?}",
                self.components, components
            ));
        }
        let n = self.candidates.len();
        if n == 0 {
            return Err("the saved run has no candidates".into());
        }
        if [
            self.parents.len(),
            self.val_scores.len(),
            self.next_component.len(),
            self.discovery.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            return Err("the saved run's candidate lists differ in length".into());
        }
        if self.pareto_best.len() != val
            || self.pareto_programs.len() != val
            || self.val_scores.iter().any(|s| s.len() != val)
        {
            return Err(format!(
                "the saved run was scored on another valset (this one has {val} examples)"
            ));
        }
        let bad_parent = self
            .parents
            .iter()
            .enumerate()
            .any(|(i, ps)| ps.iter().flatten().any(|&p| p >= i));
        if self.candidates.iter().any(|t| t.len() != components.len())
            || self.next_component.iter().any(|&k| k >= components.len())
            || self.pareto_programs.iter().flatten().any(|&p| p >= n)
            || bad_parent
        {
            return Err("the saved run's state is inconsistent".into());
        }
        Ok(())
    }

    /// The candidate with the highest mean validation score, the first of equals (gepa's
    /// `FullEvaluationPolicy.get_best_program`).
    pub(crate) fn best_index(&self) -> usize {
        idxmax(&self.aggregate_scores())
    }
}

/// Python's `sum(scores) / len(scores)`, `-inf` for none.
pub(crate) fn mean(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return f64::NEG_INFINITY;
    }
    scores.iter().fold(0.0, |a, b| a + b) / scores.len() as f64
}

/// The index of the first maximum (gepa's `idxmax`).
pub(crate) fn idxmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Whether every front `y` is on also holds one of `others` (gepa's `is_dominated`).
fn is_dominated(y: usize, others: &BTreeSet<usize>, fronts: &[BTreeSet<usize>]) -> bool {
    fronts
        .iter()
        .filter(|f| f.contains(&y))
        .all(|f| f.iter().any(|p| others.contains(p)))
}

/// A front as gepa's `get_pareto_front_mapping` hands it out: `set(front)`, a copy of a set
/// built by adding its candidates in ascending order (a front starts as `{idx}` and only ever
/// gains newer, larger indices).
fn py_front(front: &BTreeSet<usize>) -> PyIntSet {
    PyIntSet::from_adds(front.iter().map(|&p| p as u64)).copy()
}

/// gepa's `remove_dominated_programs`: the fronts without the programs every front of which
/// holds another surviving program; programs are tried from the lowest score up (first seen
/// first among equals, in CPython's set order), one removal at a time. The fronts come back as
/// the set comprehensions gepa builds.
pub(crate) fn remove_dominated(fronts: &[BTreeSet<usize>], scores: &[f64]) -> Vec<PyIntSet> {
    let fronts: Vec<PyIntSet> = fronts.iter().map(py_front).collect();
    let mut programs: Vec<usize> = Vec::new();
    for front in &fronts {
        for p in front.iter() {
            let p = p as usize;
            if !programs.contains(&p) {
                programs.push(p);
            }
        }
    }
    // Python's sort is stable, as is this one.
    programs.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let sets: Vec<BTreeSet<usize>> = fronts
        .iter()
        .map(|f| f.iter().map(|p| p as usize).collect())
        .collect();
    let mut dominated: BTreeSet<usize> = BTreeSet::new();
    loop {
        let mut found = false;
        for &y in &programs {
            if dominated.contains(&y) {
                continue;
            }
            let others: BTreeSet<usize> = programs
                .iter()
                .copied()
                .filter(|p| *p != y && !dominated.contains(p))
                .collect();
            if is_dominated(y, &others, &sets) {
                dominated.insert(y);
                found = true;
                break;
            }
        }
        if !found {
            break;
        }
    }
    fronts
        .iter()
        .map(|f| PyIntSet::from_adds(f.iter().filter(|p| !dominated.contains(&(*p as usize)))))
        .collect()
}

/// gepa's `find_dominator_programs`: the programs left on some front once dominated ones are
/// removed, as `list(set(...))` orders them.
pub(crate) fn dominators(fronts: &[BTreeSet<usize>], scores: &[f64]) -> Vec<usize> {
    let kept = remove_dominated(fronts, scores);
    let all = PyIntSet::from_adds(kept.iter().flat_map(|f| f.iter().collect::<Vec<_>>()));
    all.iter().map(|p| p as usize).collect()
}

/// gepa's `select_program_candidate_from_pareto_front`'s sampling list: each non-dominated
/// program once per front it is on, in order of first appearance.
pub(crate) fn pareto_sampling_list(fronts: &[BTreeSet<usize>], scores: &[f64]) -> Vec<usize> {
    let kept = remove_dominated(fronts, scores);
    let mut freq: Vec<(usize, usize)> = Vec::new();
    for front in &kept {
        for p in front.iter() {
            let p = p as usize;
            match freq.iter_mut().find(|(q, _)| *q == p) {
                Some((_, n)) => *n += 1,
                None => freq.push((p, 1)),
            }
        }
    }
    freq.into_iter()
        .flat_map(|(p, n)| std::iter::repeat_n(p, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fronts(sets: &[&[usize]]) -> Vec<BTreeSet<usize>> {
        sets.iter().map(|s| s.iter().copied().collect()).collect()
    }

    #[test]
    fn dominated_programs_leave_the_front() {
        // Program 1 is on every front 0 is on, and more: 0 is dominated.
        let f = fronts(&[&[0, 1], &[1], &[1, 2]]);
        let kept = remove_dominated(&f, &[0.3, 0.6, 0.5]);
        let kept: Vec<Vec<u64>> = kept.iter().map(|s| s.iter().collect()).collect();
        assert_eq!(kept, vec![vec![1], vec![1], vec![1]]);
        // Python: remove_dominated_programs({0: {0, 1}, 1: {1}, 2: {1, 2}}, [0.3, 0.6, 0.5])
        //   -> {0: {1}, 1: {1}, 2: {1}}
        assert_eq!(dominators(&f, &[0.3, 0.6, 0.5]), vec![1]);
        // Two programs each alone on a front both stay.
        let f = fronts(&[&[0], &[1], &[0, 1]]);
        assert_eq!(dominators(&f, &[0.5, 0.5]), vec![0, 1]);
        assert_eq!(pareto_sampling_list(&f, &[0.5, 0.5]), vec![0, 0, 1, 1]);
    }

    #[test]
    fn large_indices_follow_cpython_set_order() {
        // Python (gepa 0.1.4), fronts built by adding ascending indices:
        //   remove_dominated_programs(...) -> {0: [9], 1: [9], 2: [17, 10], 3: [17], 4: [10]}
        //   sampling list [9, 9, 17, 17, 10, 10]; find_dominator_programs -> [9, 10, 17]
        let f = fronts(&[&[3, 9], &[9, 12], &[1, 3, 10, 12, 17], &[17], &[10, 25]]);
        let mut scores = vec![0.1; 30];
        for (i, v) in [
            (3, 0.5),
            (9, 0.6),
            (12, 0.4),
            (1, 0.3),
            (10, 0.5),
            (17, 0.7),
            (25, 0.2),
        ] {
            scores[i] = v;
        }
        assert_eq!(
            pareto_sampling_list(&f, &scores),
            vec![9, 9, 17, 17, 10, 10]
        );
        assert_eq!(dominators(&f, &scores), vec![9, 10, 17]);
    }

    #[test]
    fn equal_programs_drop_the_lower_scored_first() {
        // 0 and 1 share every front: the one tried first (lowest score) goes.
        let f = fronts(&[&[0, 1], &[0, 1]]);
        assert_eq!(dominators(&f, &[0.7, 0.4]), vec![0]);
        assert_eq!(dominators(&f, &[0.4, 0.7]), vec![1]);
        // Equal scores: the first seen is tried first.
        assert_eq!(dominators(&f, &[0.5, 0.5]), vec![1]);
    }

    #[test]
    fn adding_candidates_updates_fronts_and_round_robin() {
        let mut s = GepaState::new(
            vec!["a".into(), "b".into()],
            vec!["x".into(), "y".into()],
            vec![0.0, 1.0, 0.5],
            None,
        );
        assert_eq!(s.total_evals, 3);
        s.next_component[0] = 1;
        let i = s.add_candidate(
            vec!["x2".into(), "y".into()],
            &[0],
            vec![1.0, 1.0, 0.0],
            None,
            7,
        );
        assert_eq!(i, 1);
        assert_eq!(s.pareto_programs, fronts(&[&[1], &[0, 1], &[0]]));
        assert_eq!(s.pareto_best, vec![1.0, 1.0, 0.5]);
        assert_eq!(s.next_component, vec![1, 1]);
        assert_eq!(s.parents[1], vec![Some(0)]);
        assert_eq!(s.discovery, vec![0, 7]);
        assert_eq!(s.best_index(), 1);
        assert_eq!(idxmax(&[0.5, 0.7, 0.7]), 1);
        assert_eq!(mean(&[]), f64::NEG_INFINITY);
    }
}
