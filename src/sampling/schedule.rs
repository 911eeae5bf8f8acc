//! Timesteps and sigmas of a sampling run, equal to diffusers' schedulers for the same
//! settings: EulerDiscrete / EulerAncestralDiscrete / DPMSolverMultistep / DDIM `set_timesteps`
//! with SDXL's `leading` spacing and `steps_offset` 1, and Karras sigmas.
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_euler_discrete.py>,
//! `scheduling_dpmsolver_multistep.py`, `scheduling_ddim.py`.)
//!
//! The training schedule is computed in f32 as PyTorch does (`linspace` of sqrt(beta), squared,
//! cumulative product); the rest in f64 like NumPy, then stored as f32.

/// The sampler, as far as its schedule is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    Euler,
    #[serde(rename = "euler_a")]
    EulerAncestral,
    #[serde(rename = "dpmpp_2m")]
    DpmPp2m,
    Ddim,
}

crate::spelled! {
    Sampler, "sampler",
    (Sampler::Euler, "euler", ""),
    (Sampler::EulerAncestral, "euler_a", ""),
    (Sampler::DpmPp2m, "dpmpp_2m", ""),
    (Sampler::Ddim, "ddim", ""),
}

/// `--schedule`: the checkpoint's own (SDXL: `leading` discrete timesteps) or Karras sigmas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Default,
    Karras,
}

crate::spelled! {
    ScheduleKind, "schedule",
    (ScheduleKind::Default, "default", ""),
    (ScheduleKind::Karras, "karras", ""),
}

/// A checkpoint's training noise schedule (SDXL: scaled_linear betas 0.00085-0.012 over 1000
/// steps) and how inference timesteps are spaced.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSchedule {
    /// `alphas_cumprod[t]`, f32.
    pub alphas_cumprod: Vec<f32>,
    /// Added to every `leading` timestep (SDXL: 1).
    pub steps_offset: usize,
}

impl TrainSchedule {
    /// SDXL's: `scaled_linear` betas from 0.00085 to 0.012, 1000 steps, offset 1.
    pub fn sdxl() -> Self {
        Self::scaled_linear(0.00085, 0.012, 1000, 1)
    }

    /// `betas = linspace(sqrt(start), sqrt(end), n)^2` in f32, as `torch.linspace` spaces them.
    pub fn scaled_linear(start: f32, end: f32, n: usize, steps_offset: usize) -> Self {
        let (a, b) = (start.sqrt(), end.sqrt());
        let step = (b - a) / (n - 1) as f32;
        let mut cumprod = 1f32;
        let alphas_cumprod = (0..n)
            .map(|i| {
                // torch.linspace fills the first half from the start, the second from the end
                let root = if i < n / 2 {
                    a + step * i as f32
                } else {
                    b - step * (n - 1 - i) as f32
                };
                cumprod *= 1.0 - root * root;
                cumprod
            })
            .collect();
        TrainSchedule {
            alphas_cumprod,
            steps_offset,
        }
    }

    fn train_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// `sqrt((1 - a) / a)` per training timestep, computed in f32 as diffusers does.
    fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|&a| ((1.0 - a) / a).sqrt())
            .collect()
    }
}

/// What a run steps through.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// The UNet's timestep at each step (fractional with Karras + Euler).
    pub timesteps: Vec<f32>,
    /// Noise level at each step and after the last (0): `steps + 1` values. DDIM, which has no
    /// sigmas in diffusers, gets the sigma of each of its timesteps.
    pub sigmas: Vec<f32>,
    /// What the initial noise is multiplied by: `sqrt(sigma_max^2 + 1)` for Euler-type
    /// samplers, 1 for DPM++ and DDIM, which work in the variance-preserving space.
    pub init_noise_sigma: f32,
}

/// Why a schedule cannot be made.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("--steps {steps}: the number of steps must be between 1 and {max}")]
    Steps { steps: usize, max: usize },
    #[error("the {sampler:?} sampler has no Karras schedule; use --schedule default")]
    NoKarras { sampler: Sampler },
}

/// The timesteps and sigmas of `steps` steps of `sampler` on `train`.
pub fn schedule(
    sampler: Sampler,
    kind: ScheduleKind,
    steps: usize,
    train: &TrainSchedule,
) -> Result<Schedule, ScheduleError> {
    let n_train = train.train_steps();
    if steps == 0 || steps > n_train {
        return Err(ScheduleError::Steps {
            steps,
            max: n_train,
        });
    }
    let table = train.sigmas();
    let log_table: Vec<f64> = table.iter().map(|&s| f64::from(s.ln())).collect();
    let offset = train.steps_offset as f64;

    let (timesteps, sigmas): (Vec<f64>, Vec<f64>) = match (sampler, kind) {
        (Sampler::Ddim, ScheduleKind::Karras) => return Err(ScheduleError::NoKarras { sampler }),
        (Sampler::Euler | Sampler::EulerAncestral | Sampler::Ddim, kind) => {
            let ratio = n_train / steps;
            let t: Vec<f64> = (0..steps)
                .rev()
                .map(|i| (i * ratio) as f64 + offset)
                .collect();
            let s: Vec<f64> = t.iter().map(|&t| interp(t, &table)).collect();
            match kind {
                ScheduleKind::Default => (t, s),
                ScheduleKind::Karras => {
                    // diffusers' EulerDiscrete: between the first and last *interpolated*
                    // sigmas; timesteps mapped back by log-sigma interpolation, not rounded.
                    let s = karras(s[s.len() - 1], s[0], steps);
                    (s.iter().map(|&s| sigma_to_t(s, &log_table)).collect(), s)
                }
            }
        }
        (Sampler::DpmPp2m, ScheduleKind::Default) => {
            let ratio = n_train / (steps + 1);
            let t: Vec<f64> = (1..=steps)
                .rev()
                .map(|i| (i * ratio) as f64 + offset)
                .collect();
            let s = t.iter().map(|&t| interp(t, &table)).collect();
            (t, s)
        }
        (Sampler::DpmPp2m, ScheduleKind::Karras) => {
            // between the table's ends; timesteps rounded
            let s = karras(f64::from(table[0]), f64::from(table[n_train - 1]), steps);
            (
                s.iter()
                    .map(|&s| sigma_to_t(s, &log_table).round())
                    .collect(),
                s,
            )
        }
    };

    let init_noise_sigma = match sampler {
        Sampler::Euler | Sampler::EulerAncestral => (sigmas[0] * sigmas[0] + 1.0).sqrt() as f32,
        Sampler::DpmPp2m | Sampler::Ddim => 1.0,
    };
    Ok(Schedule {
        timesteps: timesteps.iter().map(|&t| t as f32).collect(),
        sigmas: sigmas.iter().map(|&s| s as f32).chain([0.0]).collect(),
        init_noise_sigma,
    })
}

/// `np.interp(t, arange(len), table)`.
fn interp(t: f64, table: &[f32]) -> f64 {
    let last = table.len() - 1;
    if t <= 0.0 {
        return f64::from(table[0]);
    }
    if t >= last as f64 {
        return f64::from(table[last]);
    }
    let i = t.floor() as usize;
    let w = t - i as f64;
    f64::from(table[i]) * (1.0 - w) + f64::from(table[i + 1]) * w
}

/// Karras et al. (2022) sigmas, rho 7, from `max` down to `min` in `steps` values.
fn karras(min: f64, max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (min.powf(1.0 / rho), max.powf(1.0 / rho));
    (0..steps)
        .map(|i| {
            let ramp = if steps == 1 {
                0.0
            } else {
                i as f64 / (steps - 1) as f64
            };
            (max_inv + ramp * (min_inv - max_inv)).powf(rho)
        })
        .collect()
}

/// diffusers' `_sigma_to_t`: the (fractional) timestep whose log-sigma matches, by linear
/// interpolation in the log-sigma table.
fn sigma_to_t(sigma: f64, log_table: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_table.len();
    // the last index whose log-sigma is <= log_sigma, at most n - 2
    let low = log_table
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(n - 2);
    let (lo, hi) = (log_table[low], log_table[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}
