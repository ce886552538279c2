//! Choosing what to work on: the parent candidate (gepa's `ParetoCandidateSelector` and
//! `CurrentBestCandidateSelector`), the training minibatch (`EpochShuffledBatchSampler`) and the
//! components to rewrite (`RoundRobinReflectionComponentSelector`, `AllReflectionComponentSelector`).
//! Every draw comes from the run's one [`PyRandom`], in gepa's order.

use super::state::{GepaState, idxmax, pareto_sampling_list};
use crate::pycompat::PyRandom;
use serde::{Deserialize, Serialize};

/// How the parent of each reflective mutation is chosen (DSPy's `candidate_selection_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CandidateSelection {
    /// `"pareto"`: a random candidate from the Pareto front, weighted by the number of validation
    /// instances it is best on (dominated candidates removed first).
    #[default]
    Pareto,
    /// `"current_best"`: the candidate with the highest mean validation score.
    CurrentBest,
}

/// Which components a reflective mutation rewrites (DSPy's `component_selector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ComponentSelection {
    /// `"round_robin"`: one predictor at a time, each candidate keeping its own turn.
    #[default]
    RoundRobin,
    /// `"all"`: every predictor at once.
    All,
}

/// The parent of the next mutation.
pub(crate) fn select_candidate(
    strategy: CandidateSelection,
    state: &GepaState,
    rng: &mut PyRandom,
) -> usize {
    let scores = state.aggregate_scores();
    match strategy {
        CandidateSelection::CurrentBest => idxmax(&scores),
        CandidateSelection::Pareto => {
            let list = pareto_sampling_list(&state.pareto_programs, &scores);
            rng.choice(&list).copied().unwrap_or(0)
        }
    }
}

/// The components to rewrite in `parent` (round-robin advances the parent's turn).
pub(crate) fn select_components(
    strategy: ComponentSelection,
    state: &mut GepaState,
    parent: usize,
) -> Vec<usize> {
    match strategy {
        ComponentSelection::All => (0..state.components.len()).collect(),
        ComponentSelection::RoundRobin => {
            let n = state.components.len().max(1);
            let pid = state.next_component[parent];
            state.next_component[parent] = (pid + 1) % n;
            vec![pid]
        }
    }
}

/// gepa's `EpochShuffledBatchSampler`: the training ids shuffled once an epoch and padded to a
/// multiple of the minibatch size with the least used ids, then read a minibatch per
/// iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochSampler {
    size: usize,
    shuffled: Vec<usize>,
    epoch: i64,
    /// `Counter(shuffled)`: counts in order of first insertion.
    freqs: Vec<(usize, usize)>,
    last_trainset_size: usize,
}

impl EpochSampler {
    /// A sampler of minibatches of `size` (at least 1).
    pub(crate) fn new(size: usize) -> Self {
        EpochSampler {
            size: size.max(1),
            shuffled: Vec::new(),
            epoch: -1,
            freqs: Vec::new(),
            last_trainset_size: 0,
        }
    }

    /// The minibatch size.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn update_shuffled(&mut self, n: usize, rng: &mut PyRandom) {
        self.last_trainset_size = n;
        self.shuffled = (0..n).collect();
        rng.shuffle(&mut self.shuffled);
        self.freqs = self.shuffled.iter().map(|&id| (id, 1)).collect();
        let rem = n % self.size;
        let pad = if rem == 0 { 0 } else { self.size - rem };
        for _ in 0..pad {
            // `Counter.most_common()[::-1][0]`: the lowest count, the last inserted of equals.
            let min = self.freqs.iter().map(|(_, c)| *c).min().unwrap_or(0);
            let Some(slot) = self.freqs.iter().rposition(|(_, c)| *c == min) else {
                break;
            };
            let id = self.freqs[slot].0;
            self.freqs[slot].1 += 1;
            self.shuffled.push(id);
        }
    }

    /// The minibatch of iteration `i` over a training set of `n` examples (`n` > 0).
    pub(crate) fn next_minibatch(&mut self, n: usize, i: i64, rng: &mut PyRandom) -> Vec<usize> {
        let base = (i.max(0) as usize) * self.size;
        let curr_epoch = if self.epoch == -1 {
            0
        } else {
            (base / self.shuffled.len().max(1)) as i64
        };
        if self.shuffled.is_empty() || n != self.last_trainset_size || curr_epoch > self.epoch {
            self.epoch = curr_epoch;
            self.update_shuffled(n, rng);
        }
        let len = self.shuffled.len().max(1);
        let start = base % len;
        let end = (start + self.size).min(self.shuffled.len());
        self.shuffled[start..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_match_python_with_padding_and_epochs() {
        // Python (gepa 0.1.4):
        //   rng = random.Random(0); s = EpochShuffledBatchSampler(3, rng)
        //   [s.next_minibatch_ids(loader(range(7)), State(i)) for i in range(6)]
        let mut rng = PyRandom::new(0);
        let mut s = EpochSampler::new(3);
        let batches: Vec<Vec<usize>> = (0..6).map(|i| s.next_minibatch(7, i, &mut rng)).collect();
        let mut shuffled: Vec<usize> = (0..7).collect();
        let mut check = PyRandom::new(0);
        check.shuffle(&mut shuffled);
        // The first epoch: the shuffle, padded with the last two ids (each used once, the last
        // inserted first).
        let mut first = shuffled.clone();
        first.push(shuffled[6]);
        first.push(shuffled[5]);
        assert_eq!(batches[0], first[0..3]);
        assert_eq!(batches[1], first[3..6]);
        assert_eq!(batches[2], first[6..9]);
        // The second epoch reshuffles with the same generator.
        let mut second: Vec<usize> = (0..7).collect();
        check.shuffle(&mut second);
        assert_eq!(batches[3], second[0..3]);
        assert_eq!(shuffled, [4, 2, 1, 0, 5, 3, 6]);
        assert_eq!(batches, PYTHON_BATCHES);
    }

    /// What gepa's sampler gives for the test above, printed by Python.
    const PYTHON_BATCHES: [[usize; 3]; 6] = [
        [4, 2, 1],
        [0, 5, 3],
        [6, 6, 3],
        [1, 0, 4],
        [5, 6, 2],
        [3, 3, 2],
    ];

    #[test]
    fn round_robin_takes_turns_per_candidate() {
        let mut state = GepaState::new(
            vec!["a".into(), "b".into()],
            vec!["x".into(), "y".into()],
            vec![1.0],
            None,
        );
        let picks: Vec<Vec<usize>> = (0..3)
            .map(|_| select_components(ComponentSelection::RoundRobin, &mut state, 0))
            .collect();
        assert_eq!(picks, vec![vec![0], vec![1], vec![0]]);
        assert_eq!(
            select_components(ComponentSelection::All, &mut state, 0),
            vec![0, 1]
        );
    }
}
