//! Merging (gepa's `MergeProposer`): two Pareto-front candidates that descend from a common
//! ancestor and changed different components are combined, component by component, and the
//! merge is tried on a few validation instances chosen to tell the parents apart.

use super::state::{GepaState, Texts, dominators};
use crate::error::{Error, Result};
use crate::pycompat::PyRandom;
use crate::pycompat::intset::PyIntSet;
use serde::{Deserialize, Serialize};

/// How many validation instances both parents must have been scored on (gepa's
/// `merge_val_overlap_floor`).
const VAL_OVERLAP_FLOOR: usize = 5;

/// Validation instances a merge is first tried on.
const SUBSAMPLE: usize = 5;

/// Attempts at finding a pair, and at finding an ancestor of a pair (gepa's `max_attempts`).
const MAX_ATTEMPTS: usize = 10;

/// The merge proposer's bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MergeState {
    /// Merges scheduled and not yet accepted.
    pub merges_due: usize,
    /// Merges accepted so far (gepa's `total_merges_tested` counts only accepted ones).
    pub total_merges_tested: usize,
    /// `(id1, id2, ancestor)` triplets tried.
    pub triplets: Vec<(usize, usize, usize)>,
    /// `(id1, id2, which parent each component came from)` descriptions tried.
    pub descriptions: Vec<(usize, usize, Vec<usize>)>,
    /// Whether the previous iteration accepted a reflective mutation.
    pub last_iter_found_new_program: bool,
}

/// A merged candidate to try.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MergeAttempt {
    pub texts: Texts,
    pub id1: usize,
    pub id2: usize,
    pub ancestor: usize,
}

/// gepa's `get_ancestors`: every ancestor of `node`, added depth first to a set.
fn ancestors(parents: &[Vec<Option<usize>>], node: usize, found: &mut PyIntSet) {
    for &p in parents[node].iter().flatten() {
        if !found.contains(p as u64) {
            found.add(p as u64);
            ancestors(parents, p, found);
        }
    }
}

/// Whether some component equals the ancestor's on one side and differs on the other.
fn has_desirable_predictors(c: &[Texts], ancestor: usize, id1: usize, id2: usize) -> bool {
    (0..c[ancestor].len()).any(|k| {
        let (a, x, y) = (&c[ancestor][k], &c[id1][k], &c[id2][k]);
        (a == x || a == y) && x != y
    })
}

fn find_common_ancestor_pair(
    rng: &mut PyRandom,
    state: &GepaState,
    candidates: &[usize],
    merge: &MergeState,
    agg: &[f64],
) -> Result<Option<(usize, usize, usize)>> {
    for _ in 0..MAX_ATTEMPTS {
        if candidates.len() < 2 {
            return Ok(None);
        }
        let pair = rng.sample(candidates, 2).map_err(rng_error)?;
        let (mut i, mut j) = (pair[0], pair[1]);
        if i == j {
            continue;
        }
        if j < i {
            std::mem::swap(&mut i, &mut j);
        }
        let mut ai = PyIntSet::new();
        ancestors(&state.parents, i, &mut ai);
        let mut aj = PyIntSet::new();
        ancestors(&state.parents, j, &mut aj);
        if ai.contains(j as u64) || aj.contains(i as u64) {
            continue;
        }
        // `set(list(ancestors_i)) & set(list(ancestors_j))`, in CPython's order.
        let common = PyIntSet::from_adds(ai.iter()).intersection(&PyIntSet::from_adds(aj.iter()));
        let common: Vec<usize> = common
            .iter()
            .map(|a| a as usize)
            .filter(|&a| {
                !merge.triplets.contains(&(i, j, a))
                    && agg[a] <= agg[i]
                    && agg[a] <= agg[j]
                    && has_desirable_predictors(&state.candidates, a, i, j)
            })
            .collect();
        if !common.is_empty() {
            let weights: Vec<f64> = common.iter().map(|&a| agg[a]).collect();
            let ancestor = rng
                .choices_weighted(&common, &weights, 1)
                .map_err(rng_error)?[0];
            return Ok(Some((i, j, ancestor)));
        }
    }
    Ok(None)
}

fn rng_error(e: crate::pycompat::RandomError) -> Error {
    Error::step("GEPA merge", e)
}

/// gepa's `sample_and_attempt_merge_programs_by_common_predictors` over the non-dominated
/// candidates. Components are visited in the program's order, where gepa iterates a Python
/// `set` of names, whose order depends on `PYTHONHASHSEED` (see the module docs of [`super`]).
pub(crate) fn attempt_merge(
    state: &GepaState,
    merge: &mut MergeState,
    rng: &mut PyRandom,
) -> Result<Option<MergeAttempt>> {
    let agg = state.aggregate_scores();
    let candidates = dominators(&state.pareto_programs, &agg);
    if candidates.len() < 2 || state.parents.len() < 3 {
        return Ok(None);
    }
    let c = &state.candidates;
    for _ in 0..MAX_ATTEMPTS {
        let Some((id1, id2, ancestor)) =
            find_common_ancestor_pair(rng, state, &candidates, merge, &agg)?
        else {
            continue;
        };
        if merge.triplets.contains(&(id1, id2, ancestor)) {
            continue;
        }
        let mut texts = c[ancestor].clone();
        let mut desc = Vec::new();
        for k in 0..texts.len() {
            let (a, x, y) = (&c[ancestor][k], &c[id1][k], &c[id2][k]);
            let from = if (a == x || a == y) && x != y {
                if a == x { id2 } else { id1 }
            } else if a != x && a != y {
                if agg[id1] > agg[id2] {
                    id1
                } else if agg[id2] > agg[id1] {
                    id2
                } else {
                    *rng.choice(&[id1, id2]).unwrap_or(&id1)
                }
            } else {
                id1
            };
            texts[k] = c[from][k].clone();
            desc.push(from);
        }
        if merge.descriptions.contains(&(id1, id2, desc.clone())) {
            continue;
        }
        // Every candidate is scored on the whole valset.
        if state.val_scores[id1].len().min(state.val_scores[id2].len()) < VAL_OVERLAP_FLOOR {
            continue;
        }
        merge.descriptions.push((id1, id2, desc));
        return Ok(Some(MergeAttempt {
            texts,
            id1,
            id2,
            ancestor,
        }));
    }
    Ok(None)
}

/// gepa's `select_eval_subsample_for_merged_program`: up to 5 validation ids, balanced between
/// those where the first parent scores higher, the second does, and ties.
pub(crate) fn merge_subsample(s1: &[f64], s2: &[f64], rng: &mut PyRandom) -> Result<Vec<usize>> {
    let common: Vec<usize> = (0..s1.len().min(s2.len())).collect();
    let p1: Vec<usize> = common.iter().copied().filter(|&i| s1[i] > s2[i]).collect();
    let p2: Vec<usize> = common.iter().copied().filter(|&i| s2[i] > s1[i]).collect();
    let p3: Vec<usize> = common
        .iter()
        .copied()
        .filter(|i| !p1.contains(i) && !p2.contains(i))
        .collect();
    let n_each = SUBSAMPLE.div_ceil(3).max(1);
    let mut selected: Vec<usize> = Vec::new();
    for bucket in [&p1, &p2, &p3] {
        if selected.len() >= SUBSAMPLE {
            break;
        }
        let available: Vec<usize> = bucket
            .iter()
            .copied()
            .filter(|i| !selected.contains(i))
            .collect();
        let take = available.len().min(n_each).min(SUBSAMPLE - selected.len());
        if take > 0 {
            selected.extend(rng.sample(&available, take).map_err(rng_error)?);
        }
    }
    let remaining = SUBSAMPLE.saturating_sub(selected.len());
    if remaining > 0 {
        let unused: Vec<usize> = common
            .iter()
            .copied()
            .filter(|i| !selected.contains(i))
            .collect();
        if unused.len() >= remaining {
            selected.extend(rng.sample(&unused, remaining).map_err(rng_error)?);
        } else if !common.is_empty() {
            selected.extend(rng.choices(&common, remaining).map_err(rng_error)?);
        }
    }
    selected.truncate(SUBSAMPLE);
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> GepaState {
        // Seed 0; 1 changed component a, 2 changed component b; both children of 0.
        let mut s = GepaState::new(
            vec!["a".into(), "b".into()],
            vec!["a0".into(), "b0".into()],
            vec![0.5; 6],
            None,
        );
        s.add_candidate(
            vec!["a1".into(), "b0".into()],
            &[0],
            vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5],
            None,
            6,
        );
        s.add_candidate(
            vec!["a0".into(), "b2".into()],
            &[0],
            vec![0.5, 0.5, 0.5, 1.0, 1.0, 1.0],
            None,
            12,
        );
        s
    }

    #[test]
    fn merges_take_each_changed_component() {
        let s = state();
        let mut merge = MergeState::default();
        let mut rng = PyRandom::new(0);
        let attempt = attempt_merge(&s, &mut merge, &mut rng).unwrap().unwrap();
        assert_eq!((attempt.id1, attempt.id2, attempt.ancestor), (1, 2, 0));
        assert_eq!(attempt.texts, vec!["a1".to_string(), "b2".to_string()]);
        assert_eq!(merge.descriptions, vec![(1, 2, vec![1, 2])]);
        // The same merge is not proposed twice.
        merge.triplets.push((1, 2, 0));
        assert!(attempt_merge(&s, &mut merge, &mut rng).unwrap().is_none());
    }

    #[test]
    fn subsample_matches_python() {
        // Python: MergeProposer(..., rng=random.Random(0)).select_eval_subsample_for_merged_program(
        //   dict(enumerate(s1)), dict(enumerate(s2)))
        let s = state();
        let mut rng = PyRandom::new(0);
        let ids = merge_subsample(&s.val_scores[1], &s.val_scores[2], &mut rng).unwrap();
        assert_eq!(ids, PYTHON_SUBSAMPLE);
    }

    const PYTHON_SUBSAMPLE: [usize; 5] = [1, 2, 3, 4, 5];
}
