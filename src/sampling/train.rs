//! A checkpoint's training noise schedule: SDXL's `scaled_linear` betas, or the same betas
//! rescaled to zero terminal SNR for checkpoints trained that way (NoobAI-XL V-Pred and its
//! merges), and how its own inference timesteps are spaced.
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_euler_discrete.py>,
//! `rescale_zero_terminal_snr`, and the schedulers' `__init__`.)
//!
//! Computed as PyTorch does on the CPU (f32 `linspace` of sqrt(beta), squared; cumulative
//! products accumulated in f64).

/// How a schedule spreads its timesteps over the training range (diffusers' `timestep_spacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// `0, r, 2r, ...` plus `steps_offset` (SDXL base's own): the last step starts short of
    /// pure noise.
    Leading,
    /// `n - 1, n - 1 - n/steps, ...`: the first step starts at the last training timestep
    /// (SGM Uniform; what zero-terminal-SNR checkpoints need).
    Trailing,
}

/// A checkpoint's training noise schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSchedule {
    /// `alphas_cumprod[t]`, f32 (0 at the last timestep with zero terminal SNR).
    pub alphas_cumprod: Vec<f32>,
    /// Added to every `leading` timestep (SDXL: 1).
    pub steps_offset: usize,
    /// The spacing of the checkpoint's own ("default") schedule.
    pub spacing: Spacing,
    /// Betas rescaled to zero terminal SNR (diffusers' `rescale_betas_zero_snr`).
    pub zero_terminal_snr: bool,
}

impl TrainSchedule {
    /// SDXL's: `scaled_linear` betas from 0.00085 to 0.012, 1000 steps, offset 1, leading.
    pub fn sdxl() -> Self {
        Self::from_betas(
            &scaled_linear(0.00085, 0.012, 1000),
            1,
            Spacing::Leading,
            false,
        )
    }

    /// SDXL's betas rescaled to zero terminal SNR, with trailing spacing: the schedule diffusers
    /// runs zero-terminal-SNR v-prediction checkpoints with.
    pub fn sdxl_zero_terminal_snr() -> Self {
        let betas = rescale_zero_terminal_snr(&scaled_linear(0.00085, 0.012, 1000));
        Self::from_betas(&betas, 1, Spacing::Trailing, true)
    }

    /// The schedule a checkpoint was trained with: zero terminal SNR when it says so.
    pub fn for_checkpoint(zero_terminal_snr: bool) -> Self {
        if zero_terminal_snr {
            Self::sdxl_zero_terminal_snr()
        } else {
            Self::sdxl()
        }
    }

    fn from_betas(betas: &[f32], steps_offset: usize, spacing: Spacing, ztsnr: bool) -> Self {
        TrainSchedule {
            alphas_cumprod: cumprod_alphas(betas),
            steps_offset,
            spacing,
            zero_terminal_snr: ztsnr,
        }
    }

    pub(super) fn train_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// `sqrt((1 - a) / a)` per training timestep, in f32 as diffusers computes it. With zero
    /// terminal SNR the last `a` is 0 (an infinite sigma); diffusers' sigma-based schedulers
    /// replace it with 2^-24, "close to 0 without being 0 so the first sigma is not inf"
    /// (sigma ~4096).
    pub(super) fn sigmas(&self) -> Vec<f32> {
        let last = self.alphas_cumprod.len() - 1;
        self.alphas_cumprod
            .iter()
            .enumerate()
            .map(|(t, &a)| {
                let a = if self.zero_terminal_snr && t == last {
                    2f32.powi(-24)
                } else {
                    a
                };
                ((1.0 - a) / a).sqrt()
            })
            .collect()
    }
}

/// `torch.linspace(start ** 0.5, end ** 0.5, n, dtype=float32) ** 2`: the roots taken in
/// f64 (Python's) and rounded to f32, then spaced in f32 as `torch.linspace` spaces them
/// (the first half up from the start, the second down from the end).
fn scaled_linear(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (a, b) = (start.sqrt() as f32, end.sqrt() as f32);
    let step = (b - a) / (n - 1) as f32;
    (0..n)
        .map(|i| {
            // torch.linspace fills the first half from the start, the second from the end
            // fused multiply-adds, as its vectorised kernel computes them
            let root = if i < n / 2 {
                step.mul_add(i as f32, a)
            } else {
                (-step).mul_add((n - 1 - i) as f32, b)
            };
            root * root
        })
        .collect()
}

/// `torch.cumprod(1 - betas)` on f32: each `1 - beta` in f32, the running product in f64 (the
/// CPU kernel's accumulator type), each result rounded to f32.
fn cumprod_alphas(betas: &[f32]) -> Vec<f32> {
    let mut cumprod = 1f64;
    betas
        .iter()
        .map(|b| {
            cumprod *= f64::from(1.0 - b);
            cumprod as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1): sqrt(alphas_cumprod)
/// shifted so the last is 0 and scaled so the first is unchanged, back to betas.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let mut roots: Vec<f32> = cumprod_alphas(betas).iter().map(|a| a.sqrt()).collect();
    let (first, last) = (roots[0], roots[roots.len() - 1]);
    let scale = first / (first - last);
    for r in &mut roots {
        *r = (*r - last) * scale;
    }
    let bars: Vec<f32> = roots.iter().map(|r| r * r).collect();
    let alphas = std::iter::once(bars[0]).chain(bars.windows(2).map(|w| w[1] / w[0]));
    alphas.map(|a| 1.0 - a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_terminal_snr_ends_at_zero_and_keeps_the_first_step() {
        let plain = TrainSchedule::sdxl();
        let z = TrainSchedule::sdxl_zero_terminal_snr();
        assert_eq!(z.alphas_cumprod[999], 0.0);
        assert!((z.alphas_cumprod[0] - plain.alphas_cumprod[0]).abs() < 1e-6);
        let sigmas = z.sigmas();
        assert!((sigmas[999] - 4096.0).abs() < 1.0, "{}", sigmas[999]);
        assert!(sigmas.iter().all(|s| s.is_finite()));
    }
}
