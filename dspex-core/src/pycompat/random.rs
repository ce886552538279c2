//! [`PyRandom`]: CPython's `random.Random` (Mersenne Twister MT19937), bit for bit.
//!
//! DSPy's optimizers make every "random" choice through Python's `random.Random(seed)`: which
//! labeled demos a predictor gets, how the validation pool is shuffled, which candidates are
//! tried. Picking the same demos as DSPy therefore needs the same generator, seeded the same way
//! and drawing through the same algorithms (`_randbelow`, `shuffle`, `sample` with its two
//! methods, …). The `rand` crate's algorithms give different streams, so this module ports
//! CPython 3.11's `Modules/_randommodule.c` and `Lib/random.py`.

use sha2::{Digest, Sha512};

/// Mersenne Twister state size (32-bit words).
const N: usize = 624;
/// Mersenne Twister shift.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// What a [`PyRandom`] draw can fail with: the `ValueError`/`IndexError` cases of Python's
/// `random` module, with Python's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RandomError {
    /// `sample(population, k)` with `k` larger than the population.
    #[error("Sample larger than population or is negative (k = {k}, population of {n})")]
    SampleTooLarge {
        /// The sample size asked for.
        k: usize,
        /// The population's size.
        n: usize,
    },
    /// `randrange(start, stop)` / `randint` with an empty range.
    #[error("empty range for randrange() ({start}, {stop})")]
    EmptyRange {
        /// The range's start.
        start: i64,
        /// The range's (exclusive) stop.
        stop: i64,
    },
    /// `choice` or `choices` over an empty sequence.
    #[error("Cannot choose from an empty sequence")]
    EmptySequence,
    /// `choices` with as many weights as items, summing to a positive finite total, was not
    /// what it got.
    #[error("invalid weights for choices(): {0}")]
    Weights(&'static str),
    /// [`PyRandom::from_state`] was given a state no generator has.
    #[error("invalid generator state: {0}")]
    State(&'static str),
}

/// CPython's `random.Random`: the same seeding, the same 32-bit Mersenne Twister stream and the
/// same derived draws, so a seed gives exactly the values Python gives.
///
/// ```
/// use dspex_core::pycompat::PyRandom;
///
/// // Python: random.Random(9).random() == 0.46300735781502145
/// assert_eq!(PyRandom::new(9).random(), 0.46300735781502145);
/// // Python: x = list(range(8)); random.Random(0).shuffle(x) -> [4, 1, 5, 2, 0, 3, 7, 6]
/// let mut x: Vec<u32> = (0..8).collect();
/// PyRandom::new(0).shuffle(&mut x);
/// assert_eq!(x, [4, 1, 5, 2, 0, 3, 7, 6]);
/// // Python: random.Random(0).sample(range(8), 4) -> [6, 7, 3, 0]
/// let items: Vec<u32> = (0..8).collect();
/// assert_eq!(PyRandom::new(0).sample(&items, 4)?, [6, 7, 3, 0]);
/// # Ok::<(), dspex_core::pycompat::RandomError>(())
/// ```
#[derive(Clone)]
pub struct PyRandom {
    mt: Box<[u32; N]>,
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative int seed.
    pub fn new(seed: u64) -> Self {
        // CPython splits abs(seed) into 32-bit words, least significant first; 0 is the key [0].
        let low = (seed & 0xffff_ffff) as u32;
        let high = (seed >> 32) as u32;
        if high == 0 {
            Self::from_key(&[low])
        } else {
            Self::from_key(&[low, high])
        }
    }

    /// `random.Random(seed)` for any int seed: Python seeds with `abs(seed)`, so `-3` and `3`
    /// give the same stream.
    pub fn from_i64(seed: i64) -> Self {
        Self::new(seed.unsigned_abs())
    }

    /// `random.Random(s)` for a `str` seed (version 2, Python's default): the seed is the
    /// integer of the UTF-8 bytes followed by their SHA-512 digest, big-endian.
    pub fn from_str_seed(seed: &str) -> Self {
        let mut bytes = seed.as_bytes().to_vec();
        bytes.extend_from_slice(&Sha512::digest(seed.as_bytes()));
        Self::from_be_bytes(&bytes)
    }

    /// `random.Random(int.from_bytes(bytes, "big"))`: seeding with an arbitrarily large
    /// non-negative integer given by its big-endian bytes.
    pub fn from_be_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = &bytes[start..];
        let mut key: Vec<u32> = significant
            .rchunks(4)
            .map(|chunk| chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
            .collect();
        if key.is_empty() {
            key.push(0);
        }
        Self::from_key(&key)
    }

    /// MT19937's `init_by_array` on `key` (what CPython's `seed` does with the words of the
    /// seed). An empty key is treated as `[0]`.
    pub fn from_key(key: &[u32]) -> Self {
        let key: &[u32] = if key.is_empty() { &[0] } else { key };
        let mut mt = Box::new([0u32; N]);
        init_genrand(&mut mt, 19_650_218);
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        PyRandom { mt, index: N }
    }

    /// The generator's state, as CPython's `getstate()` holds it: the 624 words of the
    /// Mersenne Twister and the position in them. [`PyRandom::from_state`] restores it, so a
    /// run saved mid-way continues with the very draws it would have made.
    pub fn state(&self) -> (Vec<u32>, usize) {
        (self.mt.to_vec(), self.index)
    }

    /// The generator [`PyRandom::state`] saved (CPython's `setstate`).
    ///
    /// # Errors
    ///
    /// [`RandomError::State`] unless there are exactly 624 words and the position is at most 624.
    pub fn from_state(words: &[u32], index: usize) -> Result<Self, RandomError> {
        let mt: Box<[u32; N]> = words
            .to_vec()
            .into_boxed_slice()
            .try_into()
            .map_err(|_| RandomError::State("the state must hold exactly 624 words"))?;
        if index > N {
            return Err(RandomError::State("the position must be at most 624"));
        }
        Ok(PyRandom { mt, index })
    }

    /// The next 32-bit output of the Mersenne Twister (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        let mag = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
        for kk in 0..N - M {
            let y = (self.mt[kk] & UPPER_MASK) | (self.mt[kk + 1] & LOWER_MASK);
            self.mt[kk] = self.mt[kk + M] ^ (y >> 1) ^ mag(y);
        }
        for kk in N - M..N - 1 {
            let y = (self.mt[kk] & UPPER_MASK) | (self.mt[kk + 1] & LOWER_MASK);
            self.mt[kk] = self.mt[kk + M - N] ^ (y >> 1) ^ mag(y);
        }
        let y = (self.mt[N - 1] & UPPER_MASK) | (self.mt[0] & LOWER_MASK);
        self.mt[N - 1] = self.mt[M - 1] ^ (y >> 1) ^ mag(y);
        self.index = 0;
    }

    /// `random()`: a float in `[0, 1)` with 53 random bits (two 32-bit draws).
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `getrandbits(k)`: an integer of `k` random bits. Python builds it from `ceil(k / 32)`
    /// draws, the first one least significant, the last one shifted right to the bits left; for
    /// `k > 64` the same draws are made and the low 64 bits returned.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let mut out = 0u64;
        let mut left = k;
        let mut shift = 0u32;
        while left > 0 {
            let mut word = self.next_u32();
            if left < 32 {
                word >>= 32 - left;
            }
            if shift < 64 {
                out |= u64::from(word) << shift;
            }
            shift += 32;
            left = left.saturating_sub(32);
        }
        out
    }

    /// `_randbelow(n)`: an integer in `[0, n)`, drawing `n.bit_length()` bits until the value is
    /// below `n` (so a power of two wastes a bit, exactly as in Python). `n = 0` gives 0 without
    /// drawing (Python's `_randbelow` is undefined there; its callers never pass 0).
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = 64 - n.leading_zeros();
        let mut r = self.getrandbits(k);
        while r >= n {
            r = self.getrandbits(k);
        }
        r
    }

    /// `randrange(start, stop)`: an integer in `[start, stop)`.
    ///
    /// # Errors
    ///
    /// [`RandomError::EmptyRange`] when `stop <= start`.
    pub fn randrange(&mut self, start: i64, stop: i64) -> Result<i64, RandomError> {
        if stop <= start {
            return Err(RandomError::EmptyRange { start, stop });
        }
        let width = (i128::from(stop) - i128::from(start)) as u64;
        let offset = self.randbelow(width);
        Ok((i128::from(start) + i128::from(offset)) as i64)
    }

    /// `randint(a, b)`: an integer in `[a, b]` (`randrange(a, b + 1)`).
    ///
    /// # Errors
    ///
    /// [`RandomError::EmptyRange`] when `b < a`, or when `b` is `i64::MAX` (whose `b + 1` the
    /// range cannot hold).
    pub fn randint(&mut self, a: i64, b: i64) -> Result<i64, RandomError> {
        let stop = b
            .checked_add(1)
            .ok_or(RandomError::EmptyRange { start: a, stop: b })?;
        self.randrange(a, stop)
    }

    /// `choice(seq)`: one item, `seq[_randbelow(len(seq))]`; `None` (drawing nothing) when the
    /// sequence is empty, where Python raises `IndexError`.
    pub fn choice<'a, T>(&mut self, seq: &'a [T]) -> Option<&'a T> {
        if seq.is_empty() {
            return None;
        }
        let i = self.randbelow(seq.len() as u64) as usize;
        seq.get(i)
    }

    /// `shuffle(x)` in place: for `i` from the last index down to 1, swap `x[i]` with
    /// `x[_randbelow(i + 1)]`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            x.swap(i, j);
        }
    }

    /// `sample(range(n), k)`: `k` distinct indices below `n`, in selection order. Python's two
    /// methods are both reproduced: a pool of the population when `n` is at most the size of a
    /// `k`-set (`21`, plus `4 ** ceil(log(3k, 4))` when `k > 5`), else redrawing until an unused
    /// index comes up.
    ///
    /// # Errors
    ///
    /// [`RandomError::SampleTooLarge`] when `k > n`.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Result<Vec<usize>, RandomError> {
        if k > n {
            return Err(RandomError::SampleTooLarge { k, n });
        }
        let mut result = Vec::with_capacity(k);
        if n <= set_size(k) {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while selected.contains(&j) {
                    j = self.randbelow(n as u64) as usize;
                }
                selected.insert(j);
                result.push(j);
            }
        }
        Ok(result)
    }

    /// `sample(population, k)`: `k` items drawn without replacement, in selection order (see
    /// [`PyRandom::sample_indices`]).
    ///
    /// # Errors
    ///
    /// [`RandomError::SampleTooLarge`] when `k` exceeds the population.
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Result<Vec<T>, RandomError> {
        Ok(self
            .sample_indices(population.len(), k)?
            .into_iter()
            .map(|i| population[i].clone())
            .collect())
    }

    /// `choices(population, k=k)`: `k` items drawn with replacement,
    /// `population[floor(random() * n)]` each.
    ///
    /// # Errors
    ///
    /// [`RandomError::EmptySequence`] when the population is empty and `k > 0`.
    pub fn choices<T: Clone>(&mut self, population: &[T], k: usize) -> Result<Vec<T>, RandomError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        if population.is_empty() {
            return Err(RandomError::EmptySequence);
        }
        let n = population.len() as f64;
        Ok((0..k)
            .map(|_| {
                let i = (self.random() * n).floor() as usize;
                population[i.min(population.len() - 1)].clone()
            })
            .collect())
    }

    /// `choices(population, weights, k=k)`: `k` items drawn with replacement with relative
    /// weights — `population[bisect_right(cum_weights, random() * total, 0, n - 1)]` each.
    ///
    /// # Errors
    ///
    /// [`RandomError::Weights`] unless there is one weight per item and their total is positive
    /// and finite; [`RandomError::EmptySequence`] for an empty population.
    pub fn choices_weighted<T: Clone>(
        &mut self,
        population: &[T],
        weights: &[f64],
        k: usize,
    ) -> Result<Vec<T>, RandomError> {
        if population.is_empty() {
            return Err(RandomError::EmptySequence);
        }
        if weights.len() != population.len() {
            return Err(RandomError::Weights(
                "the number of weights does not match the population",
            ));
        }
        let mut cum = Vec::with_capacity(weights.len());
        let mut acc = 0.0f64;
        for w in weights {
            acc += w;
            cum.push(acc);
        }
        let total = acc;
        if total <= 0.0 {
            return Err(RandomError::Weights(
                "total of weights must be greater than zero",
            ));
        }
        if !total.is_finite() {
            return Err(RandomError::Weights("total of weights must be finite"));
        }
        let hi = population.len() - 1;
        Ok((0..k)
            .map(|_| {
                let x = self.random() * total;
                // bisect_right over cum[0..hi]
                let i = cum[..hi].partition_point(|&c| c <= x);
                population[i].clone()
            })
            .collect())
    }
}

/// CPython's `sample` threshold: the size of a set of `k` items, in list slots.
fn set_size(k: usize) -> usize {
    let mut size = 21usize;
    if k > 5 {
        // 4 ** ceil(log(k * 3, 4)), with math.log's float division as in Python.
        let exp = ((k as f64 * 3.0).ln() / 4.0f64.ln()).ceil();
        let pow = 4f64.powf(exp);
        size = size.saturating_add(if pow >= usize::MAX as f64 {
            usize::MAX
        } else {
            pow as usize
        });
    }
    size
}

/// MT19937's `init_genrand`.
fn init_genrand(mt: &mut [u32; N], seed: u32) {
    mt[0] = seed;
    for i in 1..N {
        mt[i] = 1_812_433_253u32
            .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
            .wrapping_add(i as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Sequences captured from CPython 3.11 by `testdata/gen_py_random.py`.
    fn python() -> Value {
        serde_json::from_str(include_str!("testdata/py_random.json")).unwrap()
    }

    fn u64s(v: &Value) -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    }

    fn random53(r: &mut PyRandom) -> u64 {
        (r.random() * 9_007_199_254_740_992.0) as u64
    }

    #[test]
    fn int_seeds_match_cpython_draw_for_draw() {
        let py = python();
        let cases = py["int_seeds"].as_array().unwrap();
        assert_eq!(cases.len(), 11);
        for case in cases {
            let seed = case["seed"].as_u64().unwrap();
            let mut r = PyRandom::new(seed);
            let ctx = format!("seed {seed}");
            let randoms: Vec<u64> = (0..5).map(|_| random53(&mut r)).collect();
            assert_eq!(randoms, u64s(&case["random53"]), "{ctx}");
            let bits: Vec<u64> = [1, 5, 31, 32, 33, 53, 64]
                .iter()
                .map(|&k| r.getrandbits(k))
                .collect();
            assert_eq!(bits, u64s(&case["bits"]), "{ctx}");
            let below: Vec<u64> = [
                1,
                2,
                3,
                4,
                7,
                8,
                100,
                1 << 31,
                (1 << 32) + 1,
                1_000_000_000_000_000,
                u64::MAX,
            ]
            .iter()
            .map(|&n| r.randbelow(n))
            .collect();
            assert_eq!(below, u64s(&case["below"]), "{ctx}");
            let ints: Vec<i64> = (0..6).map(|_| r.randint(-5, 5).unwrap()).collect();
            let expected: Vec<i64> = case["randint"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            assert_eq!(ints, expected, "{ctx}");
            let mut x: Vec<u64> = (0..20).collect();
            r.shuffle(&mut x);
            assert_eq!(x, u64s(&case["shuffle20"]), "{ctx}");
            let idx = |v: Vec<usize>| v.into_iter().map(|i| i as u64).collect::<Vec<_>>();
            assert_eq!(
                idx(r.sample_indices(10, 3).unwrap()),
                u64s(&case["sample_pool"]),
                "{ctx}"
            );
            assert_eq!(
                idx(r.sample_indices(100, 30).unwrap()),
                u64s(&case["sample_pool_k"]),
                "{ctx}"
            );
            assert_eq!(
                idx(r.sample_indices(1000, 5).unwrap()),
                u64s(&case["sample_set"]),
                "{ctx}"
            );
            assert_eq!(
                idx(r.sample_indices(1000, 30).unwrap()),
                u64s(&case["sample_set_k"]),
                "{ctx}"
            );
            let all: Vec<u64> = (0..8).collect();
            assert_eq!(r.sample(&all, 8).unwrap(), u64s(&case["sample_all"]));
            let letters: Vec<char> = "abcdefg".chars().collect();
            let picked: String = (0..5).map(|_| *r.choice(&letters).unwrap()).collect();
            let expected: String = case["choice"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(picked, expected, "{ctx}");
            let pop: Vec<u64> = (0..7).collect();
            assert_eq!(r.choices(&pop, 5).unwrap(), u64s(&case["choices"]), "{ctx}");
            let pop: Vec<u64> = (0..5).collect();
            assert_eq!(
                r.choices_weighted(&pop, &[1.0, 2.0, 3.0, 4.0, 5.5], 6)
                    .unwrap(),
                u64s(&case["choices_w"]),
                "{ctx}"
            );
            assert_eq!(u64::from(r.next_u32()), case["after"].as_u64().unwrap());
        }
    }

    #[test]
    fn str_seeds_and_check_values_match_cpython() {
        let py = python();
        for case in py["str_seeds"].as_array().unwrap() {
            let seed = case["seed"].as_str().unwrap();
            let mut r = PyRandom::from_str_seed(seed);
            let randoms: Vec<u64> = (0..3).map(|_| random53(&mut r)).collect();
            assert_eq!(randoms, u64s(&case["random53"]), "seed {seed:?}");
            assert_eq!(r.getrandbits(32), case["bits"].as_u64().unwrap());
        }
        let ones: Vec<u64> = (0..16)
            .map(|s| PyRandom::new(s).randint(1, 4).unwrap() as u64)
            .collect();
        assert_eq!(ones, u64s(&py["randint_1_4"]));
        let pop: Vec<u64> = (0..22).collect();
        assert_eq!(
            PyRandom::new(7).sample(&pop, 5).unwrap(),
            u64s(&py["sample_n22_k5"])
        );
        assert_eq!(
            PyRandom::new(3).sample(&pop, 1).unwrap(),
            u64s(&py["sample_n22_k1"])
        );
        // abs(seed), and the zero-padded big-endian seed form.
        assert_eq!(
            PyRandom::from_i64(-3).getrandbits(32),
            PyRandom::new(3).getrandbits(32)
        );
        assert_eq!(
            PyRandom::from_be_bytes(&[0, 0, 1, 0, 0, 0, 2]).getrandbits(64),
            PyRandom::new((1 << 32) | 2).getrandbits(64)
        );
        assert_eq!(
            PyRandom::from_be_bytes(&[]).random(),
            PyRandom::new(0).random()
        );
    }

    #[test]
    fn python_errors_are_values() {
        let mut r = PyRandom::new(0);
        assert_eq!(
            r.sample(&[1, 2], 3),
            Err(RandomError::SampleTooLarge { k: 3, n: 2 })
        );
        assert!(matches!(
            r.randrange(5, 5),
            Err(RandomError::EmptyRange { .. })
        ));
        assert!(r.randint(i64::MIN, i64::MAX).is_err());
        assert!(r.randint(i64::MIN, i64::MAX - 1).is_ok());
        assert_eq!(r.choice::<u8>(&[]), None);
        assert!(r.choices::<u8>(&[], 1).is_err());
        assert!(r.choices_weighted(&[1], &[0.0], 1).is_err());
        assert!(r.choices_weighted(&[1, 2], &[1.0], 1).is_err());
        assert_eq!(r.sample::<u8>(&[], 0).unwrap(), Vec::<u8>::new());
        // Nothing was drawn by the failed calls: the stream goes on as a fresh one.
        let mut fresh = PyRandom::new(0);
        fresh.randint(i64::MIN, i64::MAX - 1).unwrap();
        assert_eq!(r.next_u32(), fresh.next_u32());
    }
}
