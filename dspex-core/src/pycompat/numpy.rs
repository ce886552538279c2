//! numpy, where optuna's TPE sampler (and so DSPy's MIPROv2) depends on it bit for bit: the
//! legacy `RandomState(seed)` Mersenne Twister and `np.sum`'s pairwise summation.

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
