//! PyTorch's CPU random generator, so a seed gives the same initial noise as diffusers or
//! ComfyUI with a CPU generator: `torch.randn(shape, generator=torch.Generator("cpu")
//! .manual_seed(seed))` in float32, value for value (to an ulp of the libm used).
//!
//! What PyTorch does (ATen `CPUGeneratorImpl`, `DistributionTemplates.h` `normal_kernel`):
//! - the engine is MT19937 seeded with the low 32 bits of the seed;
//! - a float32 tensor of 16 or more values is filled with uniforms `(u32 & 0xFFFFFF) / 2^24`,
//!   then turned into normals by Box-Muller in blocks of 16: for `j < 8`,
//!   `r = sqrt(-2 ln(1 - u[j]))`, `t = 2 pi u[j + 8]`, `x[j] = r cos t`, `x[j + 8] = r sin t`;
//!   when the count is not a multiple of 16, the last 16 values are drawn again and redone;
//! - fewer than 16 values come one at a time from a double Box-Muller on two 53-bit uniforms,
//!   whose second value (`r sin t`) is cached in the generator for the next such draw.

/// MT19937 as `std::mt19937` / PyTorch's `at::mt19937`.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1812433253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[i] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// A PyTorch CPU generator after `manual_seed(seed)`.
#[derive(Clone)]
pub struct TorchRng {
    engine: Mt19937,
    /// The second value of the last double Box-Muller pair, used by the next small draw.
    next_double_normal: Option<f64>,
}

impl TorchRng {
    pub fn new(seed: u64) -> Self {
        TorchRng {
            engine: Mt19937::new(seed as u32),
            next_double_normal: None,
        }
    }

    /// A float uniform in [0, 1): 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.engine.next_u32() & 0x00ff_ffff) as f32 / (1u32 << 24) as f32
    }

    /// A double uniform in [0, 1): 53 bits of two draws (the first one high).
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.engine.next_u32());
        let lo = u64::from(self.engine.next_u32());
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }

    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn(n, generator=self)` in float32 (any shape of `n` values, row-major).
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for start in (0..n - 15).step_by(16) {
            box_muller_16(&mut data[start..start + 16]);
        }
        if n % 16 != 0 {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }
}

/// PyTorch's `normal_fill_16`: 16 uniforms to 16 standard normals, in f32.
fn box_muller_16(data: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0f32 * std::f64::consts::PI as f32 * u2;
        data[j] = radius * theta.cos();
        data[j + 8] = radius * theta.sin();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_standard() {
        // std::mt19937 with the default seed 5489: the 10000th output is 4123659995.
        let mut mt = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10000 {
            last = mt.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }
}
