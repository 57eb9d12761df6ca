//! The project's one pseudo-random generator: SplitMix64, identical on every platform and device, so
//! seeds give the same phantoms, folds, augmentations, dropout masks and bootstrap samples everywhere
//! (libtorch's global generator is shared by the whole process and differs between CPU and CUDA).
use std::f64::consts::PI;

/// SplitMix64 (Steele, Lea & Flood 2014): a fast, well-mixed 64-bit PRNG, identical everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform in `0 .. n` (`n >= 1`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n.max(1) as u128) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// A generator for a sub-stream, e.g. (seed, fold, epoch).
    pub fn derive(parts: &[u64]) -> Self {
        Self(parts.iter().fold(0x5EED, |acc, &p| derive_seed(acc, p)))
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i as u64 + 1) as usize);
        }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform(); // (0, 1]
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * self.uniform()).cos()
    }
}

/// A seed for the stream `stream` of `seed` (independent-looking seeds for related uses).
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut rng = Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    rng.next_u64();
    rng.next_u64()
}
