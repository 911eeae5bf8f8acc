//! Every sampler the engine runs, as one table row each ([`SAMPLERS`]): its names (ours,
//! ComfyUI's, A1111's), which diffusers scheduler it equals and how that scheduler lays out
//! its timesteps, and the constructor of its stepping rule. A stepping rule ([`Stepper`]) lives
//! in one file per family and sees only the schedule, the model's output and the latents;
//! adding a sampler is one rule and one row.

mod ddim;
mod dpm2;
mod dpmpp;
mod euler;
mod heun;
mod lcm;
mod lms;
mod plms;
mod unipc;

use burn::tensor::Tensor;

use super::schedule::Timing;
use super::{Prediction, Schedule, ScheduleKind, TrainSchedule};

/// A sampler (spellings and names: [`SAMPLERS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sampler {
    Euler,
    EulerAncestral,
    Heun,
    Dpm2,
    Dpm2Ancestral,
    Lms,
    DpmPp2m,
    DpmPp2mSde,
    DpmPp3mSde,
    UniPc,
    Ddim,
    Plms,
    Lcm,
}

/// One sampler's row.
pub struct SamplerSpec {
    pub sampler: Sampler,
    /// Ours: `--sampler`, jobs files, JSON metadata.
    pub name: &'static str,
    /// ComfyUI's `sampler_name`.
    pub comfy: &'static str,
    /// A1111's display name (infotext `Sampler:`, `/sdapi/v1/samplers`).
    pub a1111: &'static str,
    /// Other spellings accepted (A1111's `k_` aliases).
    pub aliases: &'static [&'static str],
    /// What A1111's "Automatic" schedule type runs for it.
    pub a1111_automatic: ScheduleKind,
    /// A1111's `options` for it (string values, as its API prints them;
    /// `modules/sd_samplers_kdiffusion.py` v1.10).
    pub a1111_options: &'static [(&'static str, &'static str)],
    /// Draws fresh noise while stepping (from the seeded CPU generators, diffusers' order).
    pub stochastic: bool,
    /// How diffusers' scheduler places its timesteps and sigmas.
    pub(super) timing: Timing,
    /// Model calls per step (diffusers' `order`: where img2img's first call is).
    pub(super) order: usize,
    pub(super) stepper: fn(&Schedule, &TrainSchedule, Prediction) -> Box<dyn Stepper>,
}

/// Every sampler, in the order help and `/sdapi/v1/samplers` list them.
pub const SAMPLERS: [SamplerSpec; 13] = [
    SamplerSpec {
        sampler: Sampler::Euler,
        name: "euler",
        comfy: "euler",
        a1111: "Euler",
        aliases: &["k_euler"],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[],
        stochastic: false,
        timing: Timing::Discrete,
        order: 1,
        stepper: euler::euler,
    },
    SamplerSpec {
        sampler: Sampler::EulerAncestral,
        name: "euler_a",
        comfy: "euler_ancestral",
        a1111: "Euler a",
        aliases: &["k_euler_a", "k_euler_ancestral"],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[("uses_ensd", "True")],
        stochastic: true,
        timing: Timing::Discrete,
        order: 1,
        stepper: euler::euler_ancestral,
    },
    SamplerSpec {
        sampler: Sampler::Heun,
        name: "heun",
        comfy: "heun",
        a1111: "Heun",
        aliases: &["k_heun"],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[("second_order", "True")],
        stochastic: false,
        timing: Timing::Discrete,
        order: 2,
        stepper: heun::heun,
    },
    SamplerSpec {
        sampler: Sampler::Dpm2,
        name: "dpm2",
        comfy: "dpm_2",
        a1111: "DPM2",
        aliases: &["k_dpm_2"],
        a1111_automatic: ScheduleKind::Karras,
        a1111_options: &[
            ("scheduler", "karras"),
            ("discard_next_to_last_sigma", "True"),
            ("second_order", "True"),
        ],
        stochastic: false,
        timing: Timing::DiscreteRoundedKarras,
        order: 2,
        stepper: dpm2::dpm2,
    },
    SamplerSpec {
        sampler: Sampler::Dpm2Ancestral,
        name: "dpm2_a",
        comfy: "dpm_2_ancestral",
        a1111: "DPM2 a",
        aliases: &["k_dpm_2_a"],
        a1111_automatic: ScheduleKind::Karras,
        a1111_options: &[
            ("scheduler", "karras"),
            ("discard_next_to_last_sigma", "True"),
            ("uses_ensd", "True"),
            ("second_order", "True"),
        ],
        stochastic: true,
        timing: Timing::DiscreteRoundedKarras,
        order: 2,
        stepper: dpm2::dpm2_ancestral,
    },
    SamplerSpec {
        sampler: Sampler::Lms,
        name: "lms",
        comfy: "lms",
        a1111: "LMS",
        aliases: &["k_lms"],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[],
        stochastic: false,
        timing: Timing::Discrete,
        order: 1,
        stepper: lms::lms,
    },
    SamplerSpec {
        sampler: Sampler::DpmPp2m,
        name: "dpmpp_2m",
        comfy: "dpmpp_2m",
        a1111: "DPM++ 2M",
        aliases: &["k_dpmpp_2m"],
        a1111_automatic: ScheduleKind::Karras,
        a1111_options: &[("scheduler", "karras")],
        stochastic: false,
        timing: Timing::Multistep,
        order: 1,
        stepper: dpmpp::dpmpp_2m,
    },
    SamplerSpec {
        sampler: Sampler::DpmPp2mSde,
        name: "dpmpp_2m_sde",
        comfy: "dpmpp_2m_sde",
        a1111: "DPM++ 2M SDE",
        aliases: &["k_dpmpp_2m_sde"],
        a1111_automatic: ScheduleKind::Exponential,
        a1111_options: &[("scheduler", "exponential"), ("brownian_noise", "True")],
        stochastic: true,
        timing: Timing::Multistep,
        order: 1,
        stepper: dpmpp::dpmpp_2m_sde,
    },
    SamplerSpec {
        sampler: Sampler::DpmPp3mSde,
        name: "dpmpp_3m_sde",
        comfy: "dpmpp_3m_sde",
        a1111: "DPM++ 3M SDE",
        aliases: &["k_dpmpp_3m_sde"],
        a1111_automatic: ScheduleKind::Exponential,
        a1111_options: &[
            ("scheduler", "exponential"),
            ("discard_next_to_last_sigma", "True"),
            ("brownian_noise", "True"),
        ],
        stochastic: true,
        timing: Timing::Multistep,
        order: 1,
        stepper: dpmpp::dpmpp_3m_sde,
    },
    SamplerSpec {
        sampler: Sampler::UniPc,
        name: "unipc",
        comfy: "uni_pc_bh2",
        a1111: "UniPC",
        aliases: &["uni_pc"],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[],
        stochastic: false,
        timing: Timing::Multistep,
        order: 1,
        stepper: unipc::unipc,
    },
    SamplerSpec {
        sampler: Sampler::Ddim,
        name: "ddim",
        comfy: "ddim",
        a1111: "DDIM",
        aliases: &[],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[],
        stochastic: false,
        timing: Timing::Ddim,
        order: 1,
        stepper: ddim::ddim,
    },
    SamplerSpec {
        sampler: Sampler::Plms,
        name: "plms",
        comfy: "plms",
        a1111: "PLMS",
        aliases: &["pndm"],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[],
        stochastic: false,
        timing: Timing::Ddim,
        order: 1,
        stepper: plms::plms,
    },
    SamplerSpec {
        sampler: Sampler::Lcm,
        name: "lcm",
        comfy: "lcm",
        a1111: "LCM",
        aliases: &[],
        a1111_automatic: ScheduleKind::Default,
        a1111_options: &[],
        stochastic: true,
        timing: Timing::Lcm,
        order: 1,
        stepper: lcm::lcm,
    },
];

impl Sampler {
    /// This sampler's row.
    pub fn spec(self) -> &'static SamplerSpec {
        SAMPLERS
            .iter()
            .find(|s| s.sampler == self)
            .expect("every sampler has a row")
    }

    /// Our name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// A1111's display name (infotext `Sampler:`).
    pub fn a1111_name(self) -> &'static str {
        self.spec().a1111
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Sampler {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One model call of a run: the UNet's timestep, what its input is scaled by, and how an
/// image is noised to start there (img2img: `alpha * x0 + sigma * noise`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    pub timestep: f32,
    pub(super) input_scale: f64,
    pub(super) noise_alpha: f64,
    pub(super) noise_sigma: f64,
}

impl Call {
    /// A call in the variance-exploding space of the Euler family (latents `x0 + sigma *
    /// noise`): the input is divided by `sqrt(sigma^2 + 1)`.
    pub(super) fn exploding(timestep: f32, sigma: f32) -> Self {
        let sigma = f64::from(sigma);
        Call {
            timestep,
            input_scale: 1.0 / (sigma * sigma + 1.0).sqrt(),
            noise_alpha: 1.0,
            noise_sigma: sigma,
        }
    }

    /// A call in the variance-preserving space (latents `alpha * x0 + sigma * noise`), where
    /// the UNet takes the latents as they are.
    pub(super) fn preserving(timestep: f32, alpha: f64, sigma: f64) -> Self {
        Call {
            timestep,
            input_scale: 1.0,
            noise_alpha: alpha,
            noise_sigma: sigma,
        }
    }
}

/// Fresh standard normal noise the shape of the latents, for the stochastic samplers: the next
/// draw from the per-image generators, in the order diffusers draws.
pub trait NoiseSource {
    fn next(&mut self) -> Tensor<4>;
}

/// A stepping rule and the state it carries between calls.
pub trait Stepper: Send {
    /// The run's model calls, in order.
    fn calls(&self) -> &[Call];

    /// Latents after call `i` returned `output` (the guided prediction) at latents `x`.
    fn step(
        &mut self,
        i: usize,
        output: Tensor<4>,
        x: Tensor<4>,
        noise: &mut dyn NoiseSource,
    ) -> Tensor<4>;

    /// The clean latents `output` at `x` points to at call `i` (a live preview).
    fn denoised(&self, i: usize, output: &Tensor<4>, x: &Tensor<4>) -> Tensor<4>;

    /// Forgets the state of earlier calls (img2img starts part-way, with none).
    fn restart(&mut self);
}

/// The variance-preserving `(alpha, sigma)` of a variance-exploding sigma.
pub(super) fn vp(sigma: f32) -> (f64, f64) {
    let s = f64::from(sigma);
    let alpha = 1.0 / (s * s + 1.0).sqrt();
    (alpha, s * alpha)
}

/// `log(alpha) - log(sigma)` of a variance-exploding sigma (infinite at sigma 0): the time
/// variable of DPM-Solver and UniPC.
fn lambda(sigma: f32) -> f64 {
    let (alpha, sigma) = vp(sigma);
    alpha.ln() - sigma.ln()
}

/// One variance-exploding call per step at the schedule's timesteps and sigmas (Euler, LMS).
fn exploding_calls(schedule: &Schedule) -> Vec<Call> {
    let steps = schedule.timesteps.iter().zip(&schedule.sigmas);
    steps.map(|(&t, &s)| Call::exploding(t, s)).collect()
}

/// One variance-preserving call per step at the schedule's timesteps and sigmas (DPM-Solver,
/// UniPC).
fn preserving_calls(schedule: &Schedule) -> Vec<Call> {
    let steps = schedule.timesteps.iter().zip(&schedule.sigmas);
    steps
        .map(|(&t, &s)| {
            let (alpha, sigma) = vp(s);
            Call::preserving(t, alpha, sigma)
        })
        .collect()
}

/// One variance-preserving call at each of `timesteps`, from `alphas_cumprod` at that integer
/// timestep (DDIM, PLMS, LCM). Leading spacing at 1000 steps reaches timestep 1000 (its offset
/// past 999), where diffusers would index past the table: the last entry stands in.
fn discrete_calls(timesteps: &[f32], alphas_cumprod: &[f32]) -> Vec<Call> {
    let last = alphas_cumprod.len() - 1;
    timesteps
        .iter()
        .map(|&t| {
            let alpha = f64::from(alphas_cumprod[(t as usize).min(last)]);
            Call::preserving(t, alpha.sqrt(), (1.0 - alpha).sqrt())
        })
        .collect()
}
