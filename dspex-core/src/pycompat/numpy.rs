//! numpy, where optuna's TPE sampler (and so DSPy's MIPROv2) depends on it bit for bit: the
//! legacy `RandomState(seed)` Mersenne Twister and `np.sum`'s pairwise summation; and where
//! DSPy's SIMBA does: `numpy.random.default_rng(seed)` (PCG64 seeded through `SeedSequence`),
//! `Generator.poisson`, and `np.percentile`'s default linear method.

/// The Mersenne Twister as numpy's legacy `RandomState(seed)` seeds and reads it.
#[derive(Clone)]
pub struct NumpyRandom {
    state: [u32; 624],
    pos: usize,
}

impl NumpyRandom {
    /// `numpy.random.RandomState(seed)` for an integer seed below 2³².
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        let mut s = seed;
        for (pos, slot) in state.iter_mut().enumerate() {
            *slot = s;
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(pos as u32 + 1);
        }
        NumpyRandom { state, pos: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// `random_sample()`: a double in [0, 1) from 53 random bits.
    pub fn random_sample(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// `choice(len(p), p=p, size=size)`.
    pub fn choice(&mut self, p: &[f64], size: usize) -> Vec<usize> {
        let mut cdf: Vec<f64> = Vec::with_capacity(p.len());
        let mut acc = 0.0;
        for &x in p {
            acc += x;
            cdf.push(acc);
        }
        let last = *cdf.last().unwrap_or(&1.0);
        for c in &mut cdf {
            *c /= last;
        }
        (0..size)
            .map(|_| {
                let u = self.random_sample();
                // searchsorted(side="right"): the first index whose cdf is > u.
                cdf.partition_point(|&c| c <= u)
                    .min(p.len().saturating_sub(1))
            })
            .collect()
    }
}

/// numpy's `np.sum` of a contiguous float64 array: pairwise summation, starting from 0.
pub fn np_sum(a: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            let mut res = 0.0;
            for &x in a {
                res += x;
            }
            res
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let mut i = 8;
            while i < n - (n % 8) {
                for j in 0..8 {
                    r[j] += a[i + j];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            while i < n {
                res += a[i];
                i += 1;
            }
            res
        } else {
            let mut n2 = n / 2;
            n2 -= n2 % 8;
            pairwise(&a[..n2]) + pairwise(&a[n2..])
        }
    }
    0.0 + pairwise(a)
}

/// numpy's `SeedSequence(entropy)` for an integer entropy (no spawn key, pool size 4):
/// [`generate_state`](Self::generate_state) gives the words a bit generator is seeded with.
#[derive(Debug, Clone)]
pub struct SeedSequence {
    pool: [u32; 4],
}

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

impl SeedSequence {
    /// `SeedSequence(entropy)`: the entropy is split into 32-bit words, least significant
    /// first (0 is the single word `[0]`), and mixed into the pool.
    pub fn new(entropy: u128) -> Self {
        let mut words = Vec::new();
        let mut e = entropy;
        loop {
            words.push(e as u32);
            e >>= 32;
            if e == 0 {
                break;
            }
        }
        let mut hash_const = INIT_A;
        let mut hashmix = |value: u32| -> u32 {
            let mut value = value ^ hash_const;
            hash_const = hash_const.wrapping_mul(MULT_A);
            value = value.wrapping_mul(hash_const);
            value ^ (value >> XSHIFT)
        };
        let mix = |x: u32, y: u32| -> u32 {
            let r = MIX_MULT_L
                .wrapping_mul(x)
                .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
            r ^ (r >> XSHIFT)
        };
        let mut pool = [0u32; 4];
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(words.get(i).copied().unwrap_or(0));
        }
        for src in 0..4 {
            for dst in 0..4 {
                if src != dst {
                    let h = hashmix(pool[src]);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        for &word in words.iter().skip(4) {
            for slot in pool.iter_mut() {
                let h = hashmix(word);
                *slot = mix(*slot, h);
            }
        }
        SeedSequence { pool }
    }

    /// `generate_state(n_words, np.uint64)`: `2 * n_words` 32-bit words read as little-endian
    /// pairs.
    pub fn generate_state(&self, n_words: usize) -> Vec<u64> {
        let mut hash_const = INIT_B;
        let words: Vec<u32> = (0..n_words * 2)
            .map(|i| {
                let mut v = self.pool[i % 4] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect();
        words
            .chunks(2)
            .map(|p| u64::from(p[0]) | (u64::from(p[1]) << 32))
            .collect()
    }
}

/// numpy's `PCG64` bit generator (128-bit LCG, XSL-RR output) as
/// `numpy.random.default_rng(seed)` seeds it, with the `Generator` methods SIMBA draws from.
#[derive(Debug, Clone)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
}

const PCG_MULT: u128 = 0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645;

impl Pcg64 {
    /// `numpy.random.default_rng(seed)` for a non-negative integer seed.
    pub fn default_rng(seed: u128) -> Self {
        let s = SeedSequence::new(seed).generate_state(4);
        let initstate = (u128::from(s[0]) << 64) | u128::from(s[1]);
        let initseq = (u128::from(s[2]) << 64) | u128::from(s[3]);
        let mut rng = Pcg64 {
            state: 0,
            inc: (initseq << 1) | 1,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(initstate);
        rng.step();
        rng
    }

    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }

    /// `bit_generator.random_raw()`: the next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        ((s >> 64) as u64 ^ s as u64).rotate_right((s >> 122) as u32)
    }

    /// `Generator.random()`: a double in [0, 1) from the top 53 bits.
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `Generator.poisson(lam)` for one finite `lam >= 0`: 0 without a draw for `lam == 0`,
    /// multiplication of uniforms below 10, the PTRS transformed rejection from 10 up.
    pub fn poisson(&mut self, lam: f64) -> i64 {
        if lam >= 10.0 {
            self.poisson_ptrs(lam)
        } else if lam == 0.0 {
            0
        } else {
            let enlam = (-lam).exp();
            let mut x = 0;
            let mut prod = 1.0;
            loop {
                prod *= self.random();
                if prod > enlam {
                    x += 1;
                } else {
                    return x;
                }
            }
        }
    }

    fn poisson_ptrs(&mut self, lam: f64) -> i64 {
        let slam = lam.sqrt();
        let loglam = lam.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let invalpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.random() - 0.5;
            let v = self.random();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + lam + 0.43).floor() as i64;
            if us >= 0.07 && v <= vr {
                return k;
            }
            if k < 0 || (us < 0.013 && v > us) {
                continue;
            }
            if (v.ln() + invalpha.ln() - (a / (us * us) + b).ln())
                <= (-lam + k as f64 * loglam - loggam(k as f64 + 1.0))
            {
                return k;
            }
        }
    }
}

/// numpy's `random_loggam`: log Γ(x) by Stirling's series, shifted up to 7.
fn loggam(x: f64) -> f64 {
    const A: [f64; 10] = [
        8.333_333_333_333_333e-2,
        -2.777_777_777_777_778e-3,
        7.936_507_936_507_937e-4,
        -5.952_380_952_380_952e-4,
        8.417_508_417_508_418e-4,
        -1.917_526_917_526_918e-3,
        6.410_256_410_256_41e-3,
        -2.955_065_359_477_124e-2,
        1.796_443_723_688_307e-1,
        -1.392_432_216_905_9,
    ];
    if x == 1.0 || x == 2.0 {
        return 0.0;
    }
    let n = if x < 7.0 { (7.0 - x) as i64 } else { 0 };
    let mut x0 = x + n as f64;
    let x2 = (1.0 / x0) * (1.0 / x0);
    let lg2pi = 1.837_877_066_409_345_3;
    let mut gl0 = A[9];
    for k in (0..9).rev() {
        gl0 *= x2;
        gl0 += A[k];
    }
    let mut gl = gl0 / x0 + 0.5 * lg2pi + (x0 - 0.5) * x0.ln() - x0;
    if x < 7.0 {
        for _ in 1..=n {
            gl -= (x0 - 1.0).ln();
            x0 -= 1.0;
        }
    }
    gl
}

/// `np.percentile(a, q)` with the default linear method: `None` for an empty `a`.
pub fn percentile(a: &[f64], q: f64) -> Option<f64> {
    if a.is_empty() {
        return None;
    }
    let mut sorted = a.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    let prev = (virtual_index.floor().max(0.0) as usize).min(n - 1);
    let next = (prev + 1).min(n - 1);
    let gamma = virtual_index - prev as f64;
    let (lo, hi) = (sorted[prev], sorted[next]);
    let diff = hi - lo;
    Some(if gamma >= 0.5 {
        hi - diff * (1.0 - gamma)
    } else {
        lo + diff * gamma
    })
}

#[cfg(test)]
mod pcg_tests {
    use super::*;

    // Values printed by numpy 2.4.6.
    #[test]
    fn seed_sequence_matches_numpy() {
        assert_eq!(
            SeedSequence::new(0).generate_state(4),
            [
                0xdb2c_d7e7_b0f4_78be,
                0xabf4_641a_2c71_ba49,
                0x20c6_ed6d_9d7b_8d41,
                0x2c40_99de_223c_39d4
            ]
        );
        assert_eq!(
            SeedSequence::new(12345).generate_state(4),
            [
                13091511679009522556,
                13538552136045918767,
                7269824232120749972,
                4520223790601600371
            ]
        );
        assert_eq!(
            SeedSequence::new((1 << 40) + 7).generate_state(4),
            [
                974592680304384533,
                11164224302760304993,
                11068753026110695683,
                4650291916314288918
            ]
        );
    }

    #[test]
    fn pcg64_matches_numpy() {
        let mut g = Pcg64::default_rng(0);
        assert_eq!(
            [g.next_u64(), g.next_u64(), g.next_u64()],
            [
                11749869230777074271,
                4976686463289251617,
                755828109848996024
            ]
        );
        let mut g = Pcg64::default_rng(0);
        assert_eq!(
            [g.random(), g.random(), g.random()],
            [0.6369616873214543, 0.2697867137638703, 0.04097352393619469]
        );
    }

    #[test]
    fn poisson_matches_numpy() {
        let mut g = Pcg64::default_rng(0);
        let lams = [0.5, 0.0, 1.0, 0.25, 3.0, 15.0, 50.0, 0.75, 12.5, 100.0, 2.0];
        let got: Vec<i64> = lams.iter().map(|&l| g.poisson(l)).collect();
        assert_eq!(got, [1, 0, 0, 0, 7, 20, 55, 1, 10, 105, 5]);
        let mut g = Pcg64::default_rng(7);
        let got: Vec<i64> = (0..20)
            .map(|i| g.poisson(if i < 10 { 0.5 } else { 20.0 }))
            .collect();
        assert_eq!(
            got,
            [
                1, 1, 0, 1, 2, 0, 0, 0, 0, 0, 24, 15, 9, 20, 28, 20, 16, 15, 16, 15
            ]
        );
    }

    #[test]
    fn percentiles_match_numpy() {
        let a = [0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1.0];
        assert_eq!(percentile(&a, 10.0), Some(0.0));
        assert_eq!(percentile(&a, 90.0), Some(1.0));
        assert_eq!(percentile(&[3.0], 10.0), Some(3.0));
        assert_eq!(percentile(&[0.25, 0.75, 1.0, 0.0, 0.5], 90.0), Some(0.9));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
