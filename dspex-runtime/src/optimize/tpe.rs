//! A port of optuna's `TPESampler(seed=…, multivariate=True)` (optuna 5.0.0) for categorical
//! parameters — the sampler DSPy's MIPROv2 searches instruction × demo-set choices with. Given the
//! same seed and the same sequence of trials and scores, it proposes the same parameters as
//! optuna, draw for draw: its random startup trials come from numpy's legacy `RandomState`, and
//! its TPE trials from the same Parzen mixtures, candidates and acquisition rule.

use crate::pycompat::numpy::{NumpyRandom, np_sum};
use std::collections::BTreeMap;

/// Completed trials before TPE takes over from random sampling (optuna's `n_startup_trials`).
const N_STARTUP_TRIALS: usize = 10;
/// Candidates drawn from the "good" mixture per TPE trial (`n_ei_candidates`).
const N_EI_CANDIDATES: usize = 24;
/// The prior component's weight (`prior_weight`).
const PRIOR_WEIGHT: f64 = 1.0;

/// One finished trial: its parameters (choice indices by name) and its score.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TpeTrial {
    pub(crate) number: usize,
    pub(crate) params: BTreeMap<String, usize>,
    pub(crate) value: f64,
}

/// The sampler: the finished trials (kept in trial-number order, as optuna's storage returns
/// them) and optuna's two generators (the TPE sampler's and its random fallback's, both seeded
/// alike).
pub(crate) struct CategoricalTpe {
    trials: Vec<TpeTrial>,
    next_number: usize,
    tpe_rng: NumpyRandom,
    random_rng: NumpyRandom,
}

impl CategoricalTpe {
    /// `TPESampler(seed=seed, multivariate=True)` with no trials.
    pub(crate) fn new(seed: u32) -> Self {
        CategoricalTpe {
            trials: Vec::new(),
            next_number: 0,
            tpe_rng: NumpyRandom::new(seed),
            random_rng: NumpyRandom::new(seed),
        }
    }

    /// Adds a finished trial by hand (`study.add_trial`), as MIPROv2 adds its baseline and its
    /// full evaluations; it takes the next trial number.
    pub(crate) fn add(&mut self, params: BTreeMap<String, usize>, value: f64) {
        let number = self.next_number;
        self.next_number += 1;
        self.tell(number, params, value);
    }

    /// Records the score of trial `number` (from [`CategoricalTpe::ask`]); NaN scores are not
    /// recorded, as optuna fails such trials.
    pub(crate) fn tell(&mut self, number: usize, params: BTreeMap<String, usize>, value: f64) {
        if value.is_nan() {
            return;
        }
        let at = self.trials.partition_point(|t| t.number < number);
        self.trials.insert(
            at,
            TpeTrial {
                number,
                params,
                value,
            },
        );
    }

    /// The number and parameters of the next trial. `space` lists `(name, n_choices)` in the
    /// order the objective suggests them (which decides the random startup draws).
    pub(crate) fn ask(&mut self, space: &[(String, usize)]) -> (usize, BTreeMap<String, usize>) {
        let number = self.next_number;
        self.next_number += 1;
        (number, self.sample(space))
    }

    fn sample(&mut self, space: &[(String, usize)]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        if self.trials.len() >= N_STARTUP_TRIALS {
            // The relative search space: parameters every trial has with the same choices,
            // sorted by name (`IntersectionSearchSpace`).
            let mut relative: Vec<(String, usize)> = space
                .iter()
                .filter(|(name, n)| {
                    *n > 1 && self.trials.iter().all(|t| t.params.contains_key(name))
                })
                .cloned()
                .collect();
            relative.sort_by(|a, b| a.0.cmp(&b.0));
            if !relative.is_empty() {
                out = self.sample_tpe(&relative);
            }
        }
        for (name, n) in space {
            if out.contains_key(name) {
                continue;
            }
            let value = if *n <= 1 {
                // A single-choice distribution is not sampled.
                0
            } else if self.trials.len() < N_STARTUP_TRIALS {
                self.sample_random(*n)
            } else {
                self.sample_tpe(&[(name.clone(), *n)])[name]
            };
            out.insert(name.clone(), value);
        }
        out
    }

    /// `RandomSampler.sample_independent` for a categorical: one uniform per choice, the
    /// first largest wins.
    fn sample_random(&mut self, n: usize) -> usize {
        let mut best = 0;
        let mut best_value = f64::NEG_INFINITY;
        for i in 0..n {
            let u = self.random_rng.random_sample();
            if u > best_value {
                best_value = u;
                best = i;
            }
        }
        best
    }

    /// `TPESampler._sample` over `space` (sorted by name).
    fn sample_tpe(&mut self, space: &[(String, usize)]) -> BTreeMap<String, usize> {
        let n = self.trials.len();
        let n_below = ((0.1 * n as f64).ceil() as usize).min(25).min(n);
        // Sort by value, best first; Python's sort is stable, and so is this.
        let mut order: Vec<&TpeTrial> = self.trials.iter().collect();
        order.sort_by(|a, b| {
            b.value
                .partial_cmp(&a.value)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut below: Vec<&TpeTrial> = order[..n_below].to_vec();
        let mut above: Vec<&TpeTrial> = order[n_below..].to_vec();
        below.sort_by_key(|t| t.number);
        above.sort_by_key(|t| t.number);
        let below = Parzen::new(&below, space);
        let above = Parzen::new(&above, space);
        let samples = below.sample(&mut self.tpe_rng, N_EI_CANDIDATES);
        let mut best = 0;
        let mut best_value = f64::NEG_INFINITY;
        for (i, sample) in samples.iter().enumerate() {
            let acq = below.log_pdf(sample) - above.log_pdf(sample);
            // `np.argmax`: the first maximum (NaN wins, as in numpy).
            if acq > best_value || (acq.is_nan() && !best_value.is_nan()) {
                best_value = acq;
                best = i;
            }
        }
        space
            .iter()
            .zip(&samples[best])
            .map(|((name, _), &v)| (name.clone(), v))
            .collect()
    }
}

/// A Parzen estimator over categorical parameters: a mixture with one component per trial plus
/// a prior component; each component is a product of per-parameter categorical distributions.
struct Parzen {
    /// Mixture weights, normalized.
    weights: Vec<f64>,
    /// Per parameter, per component, the choice probabilities.
    dists: Vec<Vec<Vec<f64>>>,
}

impl Parzen {
    fn new(trials: &[&TpeTrial], space: &[(String, usize)]) -> Self {
        let n = trials.len();
        let mut weights: Vec<f64> = if n == 0 {
            vec![1.0]
        } else {
            let mut w = default_weights(n);
            w.push(PRIOR_WEIGHT);
            w
        };
        let total = np_sum(&weights);
        for w in &mut weights {
            *w /= total;
        }
        let dists = space
            .iter()
            .map(|(name, n_choices)| {
                if n == 0 {
                    return vec![vec![1.0 / *n_choices as f64; *n_choices]];
                }
                let n_kernels = n + 1;
                let fill = PRIOR_WEIGHT / n_kernels as f64;
                let mut rows = vec![vec![fill; *n_choices]; n_kernels];
                for (row, t) in rows.iter_mut().zip(trials) {
                    if let Some(&v) = t.params.get(name)
                        && v < *n_choices
                    {
                        row[v] += 1.0;
                    }
                }
                for row in &mut rows {
                    let sum = np_sum(row);
                    let sum = if sum == 0.0 { 1.0 } else { sum };
                    for x in row.iter_mut() {
                        *x /= sum;
                    }
                }
                rows
            })
            .collect();
        Parzen { weights, dists }
    }

    /// `_MixtureOfProductDistribution.sample`: components by `choice`, then per parameter one
    /// `rand` per sample through the component's cumulative probabilities.
    fn sample(&self, rng: &mut NumpyRandom, size: usize) -> Vec<Vec<usize>> {
        let active = rng.choice(&self.weights, size);
        let mut out = vec![vec![0usize; self.dists.len()]; size];
        for (p, dist) in self.dists.iter().enumerate() {
            let quantiles: Vec<f64> = (0..size).map(|_| rng.random_sample()).collect();
            for (s, &k) in active.iter().enumerate() {
                let row = &dist[k];
                let mut cum = 0.0;
                let mut count = 0;
                for (i, &w) in row.iter().enumerate() {
                    cum += w;
                    let c = if i + 1 == row.len() { 1.0 } else { cum };
                    if c < quantiles[s] {
                        count += 1;
                    }
                }
                out[s][p] = count;
            }
        }
        out
    }

    /// `_MixtureOfProductDistribution.log_pdf` of one sample: log-sum-exp over components.
    fn log_pdf(&self, sample: &[usize]) -> f64 {
        let mut per_component: Vec<f64> = vec![0.0; self.weights.len()];
        for (p, dist) in self.dists.iter().enumerate() {
            for (k, slot) in per_component.iter_mut().enumerate() {
                *slot += dist[k][sample[p]].ln();
            }
        }
        for (slot, w) in per_component.iter_mut().zip(&self.weights) {
            *slot += w.ln();
        }
        let mut max = per_component
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            max = 0.0;
        }
        let exps: Vec<f64> = per_component.iter().map(|x| (x - max).exp()).collect();
        np_sum(&exps).ln() + max
    }
}

/// optuna's `default_weights(n)`: ones below 25, else a ramp from 1/n for the oldest then 25 ones.
fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp_len = n - 25;
    let start = 1.0 / n as f64;
    let mut out: Vec<f64> = (0..ramp_len)
        .map(|i| {
            if ramp_len == 1 {
                start
            } else {
                // np.linspace(start, 1.0, num): start + i * step, the last exactly 1.0.
                let step = (1.0 - start) / (ramp_len - 1) as f64;
                if i + 1 == ramp_len {
                    1.0
                } else {
                    start + i as f64 * step
                }
            }
        })
        .collect();
    out.extend(std::iter::repeat_n(1.0, 25));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn numpy_random_state_matches_numpy() {
        // numpy.random.RandomState(9).random_sample(3) and RandomState(0).random_sample(2)
        let mut r = NumpyRandom::new(9);
        let got: Vec<f64> = (0..3).map(|_| r.random_sample()).collect();
        assert_eq!(
            got,
            [0.010374153885699955, 0.5018745921487388, 0.4957732931341461]
        );
        let mut r = NumpyRandom::new(0);
        assert_eq!(r.random_sample(), 0.5488135039273248);
        assert_eq!(r.random_sample(), 0.7151893663724195);
    }

    #[test]
    fn pairwise_sum_is_numpys() {
        let a: Vec<f64> = (0..20).map(|i| 0.1 * f64::from(i) + 1e-17).collect();
        let sequential: f64 = a.iter().sum();
        // Same value either way here, but the grouping must be numpy's for larger inputs.
        assert!((np_sum(&a) - sequential).abs() < 1e-12);
        assert_eq!(np_sum(&[]), 0.0);
    }

    /// Trials asked from optuna 5.0.0's `TPESampler(seed, multivariate=True)`, driven the way
    /// MIPROv2 drives it (a baseline trial added first, and a trial added by hand while every
    /// fourth asked one runs): `scripts/gen_tpe_reference.py` wrote the file.
    #[test]
    fn proposes_what_optuna_proposes() {
        let cases: Value =
            serde_json::from_str(include_str!("testdata/tpe_optuna_5_0_0.json")).unwrap();
        for case in cases.as_array().unwrap() {
            let c = &case["case"];
            let seed = c["seed"].as_u64().unwrap() as u32;
            let n_instr = c["n_instr"].as_u64().unwrap() as usize;
            let n_demos = c["n_demos"].as_u64().unwrap() as usize;
            let n_pred = c["n_pred"].as_u64().unwrap() as usize;
            let mut space = Vec::new();
            for i in 0..n_pred {
                space.push((format!("{i}_predictor_instruction"), n_instr));
                if n_demos > 0 {
                    space.push((format!("{i}_predictor_demos"), n_demos));
                }
            }
            let score = |p: &BTreeMap<String, usize>, t: i64| -> f64 {
                let mut s = 0.0;
                for (k, v) in p {
                    s += ((v * 7 + k.len()) % 5) as f64;
                }
                let raw = 50.0 + 3.0 * s + (t.rem_euclid(3)) as f64;
                (raw * 100.0).round() / 100.0
            };
            let mut tpe = CategoricalTpe::new(seed);
            let base: BTreeMap<String, usize> = space.iter().map(|(k, _)| (k.clone(), 0)).collect();
            tpe.add(base.clone(), score(&base, -1));
            for (t, want) in case["asked"].as_array().unwrap().iter().enumerate() {
                let (number, params) = tpe.ask(&space);
                let got: Vec<usize> = space.iter().map(|(k, _)| params[k]).collect();
                let want: Vec<usize> = want
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(got, want, "case {c}, trial {t}");
                let v = score(&params, t as i64);
                if t % 4 == 3 {
                    // Added while trial `number` still runs, so it takes the next number.
                    tpe.add(params.clone(), v - 1.0);
                }
                tpe.tell(number, params, v);
            }
        }
    }
}
