//! The schedule types users name, as one table like the samplers' ([`SCHEDULES`]): per row ours
//! (`--schedule`), ComfyUI's and A1111's names (A1111's `scheduler` field and "Schedule type"
//! label, its aliases, and what its `/sdapi/v1/schedulers` says of it), and its help. A1111
//! names schedules we do not run; their rows say so (`kind: None`), so a client asking for one
//! hears "not supported" rather than "unknown". A1111's list: `modules/sd_schedulers.py`
//! (v1.10, <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/sd_schedulers.py>).

use crate::spelling::{self, Spelled, UnknownSpelling};

/// `--schedule` (A1111's "Schedule type"): the checkpoint's own spacing of discrete timesteps
/// (SDXL: leading; zero-terminal-SNR checkpoints: trailing), SGM Uniform (trailing), or sigmas
/// spread by Karras et al.'s rho-7 ramp, evenly in log-sigma (Exponential), or at Beta
/// quantiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Default,
    SgmUniform,
    Karras,
    Exponential,
    Beta,
}

/// One schedule type and its names.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleSpec {
    /// Ours; `None` for a type A1111 names that we do not run.
    pub kind: Option<ScheduleKind>,
    /// Our spelling (`--schedule`); for a type we do not run, A1111's.
    pub name: &'static str,
    /// ComfyUI's scheduler name, where it has the same one.
    pub comfy: Option<&'static str>,
    /// A1111's `scheduler` value and its "Schedule type" label; `Automatic` is each sampler's
    /// own default there ([`crate::sampling::SamplerSpec::a1111_automatic`]).
    pub a1111: &'static str,
    pub a1111_label: &'static str,
    pub aliases: &'static [&'static str],
    /// What A1111's `/sdapi/v1/schedulers` says of it.
    pub default_rho: f64,
    pub need_inner_model: bool,
    pub help: &'static str,
}

const fn row(
    kind: Option<ScheduleKind>,
    name: &'static str,
    comfy: Option<&'static str>,
    a1111: (&'static str, &'static str, &'static [&'static str]),
    default_rho: f64,
    need_inner_model: bool,
    help: &'static str,
) -> ScheduleSpec {
    ScheduleSpec {
        kind,
        name,
        comfy,
        a1111: a1111.0,
        a1111_label: a1111.1,
        aliases: a1111.2,
        default_rho,
        need_inner_model,
        help,
    }
}

use ScheduleKind as K;

/// Every schedule type, in A1111's order. Columns: ours, our name, ComfyUI's, A1111's
/// (value, label, aliases), A1111's default rho and "needs the inner model", help.
#[rustfmt::skip]
pub const SCHEDULES: [ScheduleSpec; 12] = [
    row(Some(K::Default), "default", None, ("automatic", "Automatic", &[]), -1.0, false,
        "The checkpoint's own (SDXL: leading timesteps; zero-terminal-SNR checkpoints: trailing)"),
    row(None, "uniform", None, ("uniform", "Uniform", &[]), -1.0, true, ""),
    row(Some(K::Karras), "karras", Some("karras"), ("karras", "Karras", &[]), 7.0, false,
        "Karras et al. sigmas (rho 7)"),
    row(Some(K::Exponential), "exponential", Some("exponential"),
        ("exponential", "Exponential", &[]), -1.0, false, "Sigmas evenly spaced in log-sigma"),
    row(None, "polyexponential", None, ("polyexponential", "Polyexponential", &[]), 1.0, false,
        ""),
    row(Some(K::SgmUniform), "sgm_uniform", Some("sgm_uniform"),
        ("sgm_uniform", "SGM Uniform", &["SGMUniform"]), -1.0, true,
        "Trailing timesteps: the first step starts at the last training timestep"),
    row(None, "kl_optimal", Some("kl_optimal"), ("kl_optimal", "KL Optimal", &[]), -1.0, false,
        ""),
    row(None, "align_your_steps", None, ("align_your_steps", "Align Your Steps", &[]), -1.0,
        false, ""),
    row(None, "simple", Some("simple"), ("simple", "Simple", &[]), -1.0, true, ""),
    row(None, "normal", Some("normal"), ("normal", "Normal", &[]), -1.0, true, ""),
    row(None, "ddim", Some("ddim_uniform"), ("ddim", "DDIM", &[]), -1.0, true, ""),
    row(Some(K::Beta), "beta", Some("beta"), ("beta", "Beta", &[]), -1.0, true,
        "Sigmas at the quantiles of a Beta(0.6, 0.6) distribution (Lee et al. 2024)"),
];

/// The rows we run, as `--schedule` spells them (a const view of [`SCHEDULES`]).
const SPELLINGS: [(ScheduleKind, &str, &str); 5] = {
    let mut out = [(K::Default, "", ""); 5];
    let (mut i, mut j) = (0, 0);
    while i < SCHEDULES.len() {
        if let Some(kind) = SCHEDULES[i].kind {
            out[j] = (kind, SCHEDULES[i].name, SCHEDULES[i].help);
            j += 1;
        }
        i += 1;
    }
    assert!(j == out.len(), "one spelling per schedule we run");
    out
};

impl Spelled for ScheduleKind {
    const KIND: &'static str = "schedule";
    const SPELLINGS: &'static [(Self, &'static str, &'static str)] = &SPELLINGS;
}

impl std::str::FromStr for ScheduleKind {
    type Err = UnknownSpelling;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        spelling::parse(s)
    }
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.spelling())
    }
}

impl ScheduleKind {
    /// This type's row.
    pub fn spec(self) -> &'static ScheduleSpec {
        SCHEDULES
            .iter()
            .find(|row| row.kind == Some(self))
            .expect("every schedule we run has a row")
    }

    /// A1111's `Schedule type:` (its "Automatic" is the sampler's own schedule).
    pub fn a1111_name(self) -> &'static str {
        self.spec().a1111_label
    }
}

/// The row any of its names spells, in canonical spelling (lower case, `_`/`-` as spaces):
/// ours, ComfyUI's, A1111's value, label or an alias.
pub(super) fn schedule_row(canonical_name: &str) -> Option<&'static ScheduleSpec> {
    SCHEDULES.iter().find(|row| {
        [
            Some(row.name),
            row.comfy,
            Some(row.a1111),
            Some(row.a1111_label),
        ]
        .into_iter()
        .flatten()
        .chain(row.aliases.iter().copied())
        .any(|n| super::names::canonical(n) == canonical_name)
    })
}
