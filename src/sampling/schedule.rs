//! Timesteps and sigmas of a sampling run, equal to diffusers' schedulers for the same
//! settings: EulerDiscrete / EulerAncestralDiscrete / DPMSolverMultistep / DDIM `set_timesteps`
//! with the checkpoint's spacing (SDXL: `leading`, `steps_offset` 1; zero terminal SNR:
//! `trailing`), `trailing` (SGM Uniform), Karras and exponential sigmas.
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/schedulers/scheduling_euler_discrete.py>,
//! `scheduling_dpmsolver_multistep.py`, `scheduling_ddim.py`.)
//!
//! Computed in f64 like NumPy from the f32 training table, then stored as f32.

use super::train::{Spacing, TrainSchedule};
use super::{Sampler, ScheduleKind};
use crate::field::{Described, Field, FieldNames, Quantities};

/// What a run steps through, one entry per step (a sampler that calls the model twice per
/// step lays its calls out from these: [`crate::sampling::SamplingRun`]).
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
#[derive(Debug, PartialEq)]
pub enum ScheduleError {
    Steps {
        steps: usize,
        max: usize,
    },
    Unsupported {
        sampler: Sampler,
        kind: ScheduleKind,
    },
}

impl Described for ScheduleError {
    fn describe(&self, names: &dyn FieldNames) -> String {
        match self {
            Self::Steps { steps, max } => format!(
                "{} {steps}: the number of steps must be between 1 and {max}",
                names.spell(Field::Steps)
            ),
            Self::Unsupported { sampler, kind } => format!(
                "the {sampler} sampler has no {kind} schedule (it steps through discrete \
                 timesteps); use {} default or sgm_uniform",
                names.spell(Field::Schedule)
            ),
        }
    }
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(&Quantities))
    }
}

impl std::error::Error for ScheduleError {}

/// Which diffusers `set_timesteps` a sampler's schedule follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timing {
    /// EulerDiscrete's: `steps` timesteps, sigmas interpolated at them; Karras / Exponential
    /// sigmas run between the first and last interpolated sigma, their timesteps fractional.
    Discrete,
    /// KDPM2Discrete's: as `Discrete`, with Karras timesteps rounded.
    DiscreteRoundedKarras,
    /// DPMSolverMultistep's: leading spacing over `steps + 1`; Karras / Exponential sigmas run
    /// over the whole training table, their timesteps rounded (Karras) or truncated.
    Multistep,
    /// DDIM's: discrete timesteps only.
    Ddim,
    /// LCMScheduler's: a subset of the 50 timesteps `20 k - 1` its distillation used.
    Lcm,
}

/// The timesteps and sigmas of `steps` steps of `sampler` on `train`.
pub fn schedule(
    sampler: Sampler,
    kind: ScheduleKind,
    steps: usize,
    train: &TrainSchedule,
) -> Result<Schedule, ScheduleError> {
    let n_train = train.train_steps();
    let timing = sampler.spec().timing;
    let max = match timing {
        Timing::Lcm => LCM_ORIGINAL_STEPS,
        _ => n_train,
    };
    if steps == 0 || steps > max {
        return Err(ScheduleError::Steps { steps, max });
    }
    let spacing = match kind {
        ScheduleKind::SgmUniform => Spacing::Trailing,
        _ => train.spacing,
    };
    let table = train.sigmas();
    let log_table: Vec<f64> = table.iter().map(|&s| f64::from(s.ln())).collect();
    let at = |t: &[f64]| -> Vec<f64> { t.iter().map(|&t| interp(t, &table)).collect() };
    let to_t = |s: &[f64]| -> Vec<f64> { s.iter().map(|&s| sigma_to_t(s, &log_table)).collect() };

    let (timesteps, sigmas) = match (timing, kind) {
        (Timing::Ddim, ScheduleKind::Karras | ScheduleKind::Exponential | ScheduleKind::Beta)
        | (
            Timing::Lcm,
            ScheduleKind::Karras
            | ScheduleKind::Exponential
            | ScheduleKind::Beta
            | ScheduleKind::SgmUniform,
        ) => return Err(ScheduleError::Unsupported { sampler, kind }),
        (Timing::Lcm, ScheduleKind::Default) => {
            let t = lcm_timesteps(steps, n_train);
            let s = at(&t);
            (t, s)
        }
        (Timing::Discrete | Timing::DiscreteRoundedKarras | Timing::Ddim, _) => {
            let t = spaced(spacing, steps, n_train, train.steps_offset, 0);
            let s = at(&t);
            // between the first and last *interpolated* sigmas; timesteps not rounded
            let (max, min) = (s[0], s[s.len() - 1]);
            match kind {
                ScheduleKind::Karras => {
                    let s = karras(min, max, steps);
                    let t = to_t(&s);
                    match timing {
                        Timing::DiscreteRoundedKarras => (t.iter().map(|t| t.round()).collect(), s),
                        _ => (t, s),
                    }
                }
                ScheduleKind::Exponential => {
                    let s = exponential(min, max, steps);
                    (to_t(&s), s)
                }
                ScheduleKind::Beta => {
                    let s = beta(min, max, steps);
                    (to_t(&s), s)
                }
                ScheduleKind::Default | ScheduleKind::SgmUniform => (t, s),
            }
        }
        (Timing::Multistep, _) => {
            // between the table's ends
            let (min, max) = (f64::from(table[0]), f64::from(table[n_train - 1]));
            match kind {
                ScheduleKind::Karras => {
                    let s = karras(min, max, steps);
                    (to_t(&s).iter().map(|t| t.round()).collect(), s)
                }
                ScheduleKind::Exponential | ScheduleKind::Beta => {
                    let s = if kind == ScheduleKind::Beta {
                        beta(min, max, steps)
                    } else {
                        exponential(min, max, steps)
                    };
                    // diffusers stores them as int64: truncated
                    (to_t(&s).iter().map(|t| t.trunc()).collect(), s)
                }
                ScheduleKind::Default | ScheduleKind::SgmUniform => {
                    let t = spaced(spacing, steps, n_train, train.steps_offset, 1);
                    let s = at(&t);
                    (t, s)
                }
            }
        }
    };

    // the initial noise's scale: sigma_max in the variance-exploding space of the Euler
    // family (sqrt(sigma^2 + 1) with leading spacing, sigma itself with trailing, as diffusers'
    // `init_noise_sigma`), 1 in the variance-preserving space of DPM++ and DDIM
    let init_noise_sigma = match (timing, spacing) {
        (Timing::Discrete | Timing::DiscreteRoundedKarras, Spacing::Leading) => {
            (sigmas[0] * sigmas[0] + 1.0).sqrt() as f32
        }
        (Timing::Discrete | Timing::DiscreteRoundedKarras, Spacing::Trailing) => sigmas[0] as f32,
        (Timing::Multistep | Timing::Ddim | Timing::Lcm, _) => 1.0,
    };
    Ok(Schedule {
        timesteps: timesteps.iter().map(|&t| t as f32).collect(),
        sigmas: sigmas.iter().map(|&s| s as f32).chain([0.0]).collect(),
        init_noise_sigma,
    })
}

/// The timesteps LCM models were distilled on: `k = n_train / 50`, `k - 1, 2k - 1, ..., n - 1`.
const LCM_ORIGINAL_STEPS: usize = 50;

/// LCMScheduler's `steps` of the distillation timesteps, evenly picked from the noisiest.
fn lcm_timesteps(steps: usize, n_train: usize) -> Vec<f64> {
    let k = n_train / LCM_ORIGINAL_STEPS;
    // [n - 1, n - 1 - k, ..., k - 1] at floor(linspace(0, 50, steps, endpoint=False))
    (0..steps)
        .map(|i| {
            // as NumPy computes it: i * (50 / steps), floored
            let step = LCM_ORIGINAL_STEPS as f64 / steps as f64;
            let index = (i as f64 * step).floor() as usize;
            ((LCM_ORIGINAL_STEPS - index) * k - 1) as f64
        })
        .collect()
}

/// `steps` discrete timesteps, first (noisiest) first. Leading: multiples of
/// `n_train / (steps + extra)` (integer division; DPM-Solver spaces over one step more and
/// drops the last) plus `offset`. Trailing: `round(n_train - i * n_train / steps) - 1`.
fn spaced(spacing: Spacing, steps: usize, n_train: usize, offset: usize, extra: usize) -> Vec<f64> {
    match spacing {
        Spacing::Leading => {
            let ratio = n_train / (steps + extra);
            (extra..steps + extra)
                .rev()
                .map(|i| (i * ratio + offset) as f64)
                .collect()
        }
        // np.arange(n, 0, -n / steps): NumPy's float arange yields one value more for some
        // counts (61, 103, ...: its last is ~0, a timestep of -1 in diffusers); we keep `steps`.
        Spacing::Trailing => {
            let delta = n_train as f64 / steps as f64;
            (0..steps)
                .map(|i| (n_train as f64 - i as f64 * delta).round_ties_even() - 1.0)
                .collect()
        }
    }
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

/// Sigmas from `max` down to `min`, evenly spaced in log-sigma (k-diffusion's
/// `get_sigmas_exponential`).
fn exponential(min: f64, max: f64, steps: usize) -> Vec<f64> {
    linspace(max.ln(), min.ln(), steps)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// Sigmas from `max` down to `min` at the quantiles `1 - i / (steps - 1)` of Beta(0.6, 0.6)
/// (diffusers' `_convert_to_beta`, "Beta Sampling is All You Need", Lee et al. 2024): dense at
/// both ends of the range. The quantile function is puruspe's inverse regularized incomplete
/// beta (scipy's `beta.ppf` in diffusers).
fn beta(min: f64, max: f64, steps: usize) -> Vec<f64> {
    const ALPHA: f64 = 0.6;
    const BETA: f64 = 0.6;
    linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|r| min + puruspe::invbetai(1.0 - r, ALPHA, BETA) * (max - min))
        .collect()
}

/// `np.linspace(a, b, n)`.
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    (0..n)
        .map(|i| if i == n - 1 { b } else { a + i as f64 * step })
        .collect()
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
pub(super) fn sigma_to_t(sigma: f64, log_table: &[f64]) -> f64 {
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
