//! A1111's sampler and scheduler names -> ours, as exact tables (the sampler names, aliases and
//! options are the crate's [`SAMPLERS`]). A1111 splits a scheduler
//! suffix off the sampler name (`"DPM++ 2M Karras"`), takes the `scheduler` field by name or
//! label, and runs "Automatic" as the sampler's own default schedule (DPM++ 2M: Karras)
//! (`get_sampler_and_scheduler` in A1111 v1.10 `modules/sd_samplers.py`). Where A1111 falls back
//! silently on an unknown name, we answer 422 with the names we run.

use serde_json::{json, Value};

use crate::sampling::{Sampler, ScheduleKind, SAMPLERS};
use crate::server::error::ApiError;

/// A1111's schedulers: `(name, label, aliases, default rho, need inner model, ours)`; `None`
/// where we have no such schedule.
type SchedulerRow = (
    &'static str,
    &'static str,
    &'static [&'static str],
    f64,
    bool,
    Option<Option<ScheduleKind>>,
);
const SCHEDULERS: [SchedulerRow; 12] = [
    ("automatic", "Automatic", &[], -1.0, false, Some(None)),
    ("uniform", "Uniform", &[], -1.0, true, None),
    (
        "karras",
        "Karras",
        &[],
        7.0,
        false,
        Some(Some(ScheduleKind::Karras)),
    ),
    (
        "exponential",
        "Exponential",
        &[],
        -1.0,
        false,
        Some(Some(ScheduleKind::Exponential)),
    ),
    ("polyexponential", "Polyexponential", &[], 1.0, false, None),
    (
        "sgm_uniform",
        "SGM Uniform",
        &["SGMUniform"],
        -1.0,
        true,
        Some(Some(ScheduleKind::SgmUniform)),
    ),
    ("kl_optimal", "KL Optimal", &[], -1.0, false, None),
    (
        "align_your_steps",
        "Align Your Steps",
        &[],
        -1.0,
        false,
        None,
    ),
    ("simple", "Simple", &[], -1.0, true, None),
    ("normal", "Normal", &[], -1.0, true, None),
    ("ddim", "DDIM", &[], -1.0, true, None),
    (
        "beta",
        "Beta",
        &[],
        -1.0,
        true,
        Some(Some(ScheduleKind::Beta)),
    ),
];

fn sampler_names() -> String {
    SAMPLERS.map(|s| format!("{:?}", s.a1111)).join(", ")
}

fn scheduler_names() -> String {
    SCHEDULERS
        .iter()
        .filter(|row| row.5.is_some())
        .map(|row| format!("{:?}", row.1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scheduler row a client's spelling names (name, label or alias, any case).
fn scheduler_row(name: &str) -> Option<&'static SchedulerRow> {
    let name = name.trim();
    SCHEDULERS.iter().find(|row| {
        std::iter::once(row.0)
            .chain(std::iter::once(row.1))
            .chain(row.2.iter().copied())
            .any(|n| n.eq_ignore_ascii_case(name))
    })
}

/// `(sampler, schedule)` for A1111's `sampler_name` (or `sampler_index`; default "Euler") and
/// `scheduler` (default Automatic).
pub fn resolve_sampler(
    name: Option<&str>,
    scheduler: Option<&str>,
) -> Result<(Sampler, ScheduleKind), ApiError> {
    let mut schedule_row = match scheduler.filter(|s| !s.trim().is_empty()) {
        None => &SCHEDULERS[0],
        Some(s) => scheduler_row(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "scheduler: unknown scheduler {s:?}; this server runs {}",
                scheduler_names()
            ))
        })?,
    };
    let mut name = name.unwrap_or("Euler").trim().to_string();
    // a scheduler suffix on the sampler name wins, as in A1111
    for row in &SCHEDULERS {
        let spellings = std::iter::once(row.1)
            .chain(std::iter::once(row.0))
            .chain(row.2.iter().copied());
        if let Some(base) = spellings
            .filter_map(|s| name.strip_suffix(&format!(" {s}")))
            .next()
        {
            name = base.to_string();
            schedule_row = row;
            break;
        }
    }
    let Some(row) = SAMPLERS.iter().find(|s| {
        [s.a1111, s.name]
            .iter()
            .chain(s.aliases)
            .any(|a| a.eq_ignore_ascii_case(&name))
    }) else {
        return Err(ApiError::invalid(format!(
            "sampler_name: unknown sampler {name:?}; this server runs {}",
            sampler_names()
        )));
    };
    let schedule = match schedule_row.5 {
        Some(None) => row.a1111_automatic,
        Some(Some(kind)) => kind,
        None => {
            return Err(ApiError::invalid(format!(
                "scheduler: {:?} is not supported; this server runs {}",
                schedule_row.1,
                scheduler_names()
            )))
        }
    };
    Ok((row.sampler, schedule))
}

/// `GET /sdapi/v1/samplers`: the samplers we run, in A1111's shape.
pub fn samplers_json() -> Value {
    Value::Array(
        SAMPLERS
            .iter()
            .map(|row| {
                let options: serde_json::Map<String, Value> = row
                    .a1111_options
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                json!({"name": row.a1111, "aliases": row.aliases, "options": options})
            })
            .collect(),
    )
}

/// `GET /sdapi/v1/schedulers`: the schedulers we run, in A1111's shape.
pub fn schedulers_json() -> Value {
    Value::Array(
        SCHEDULERS
            .iter()
            .filter(|row| row.5.is_some())
            .map(|(name, label, aliases, rho, inner, _)| {
                let aliases = (!aliases.is_empty()).then_some(aliases);
                json!({"name": name, "label": label, "aliases": aliases, "default_rho": rho, "need_inner_model": inner})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1111_spellings() {
        let ok = [
            (None, None, Sampler::Euler, ScheduleKind::Default),
            (
                Some("Euler a"),
                None,
                Sampler::EulerAncestral,
                ScheduleKind::Default,
            ),
            (
                Some("DPM++ 2M"),
                None,
                Sampler::DpmPp2m,
                ScheduleKind::Karras,
            ),
            (
                Some("DPM++ 2M Karras"),
                None,
                Sampler::DpmPp2m,
                ScheduleKind::Karras,
            ),
            (
                Some("DPM++ 2M"),
                Some("automatic"),
                Sampler::DpmPp2m,
                ScheduleKind::Karras,
            ),
            (
                Some("Euler"),
                Some("Karras"),
                Sampler::Euler,
                ScheduleKind::Karras,
            ),
            (
                Some("Euler a Karras"),
                Some("Automatic"),
                Sampler::EulerAncestral,
                ScheduleKind::Karras,
            ),
            (
                Some("k_euler"),
                Some("karras"),
                Sampler::Euler,
                ScheduleKind::Karras,
            ),
            (Some("DDIM"), None, Sampler::Ddim, ScheduleKind::Default),
            (
                Some("DPM++ 2M SDE"),
                None,
                Sampler::DpmPp2mSde,
                ScheduleKind::Exponential,
            ),
            (
                Some("DPM++ 3M SDE Karras"),
                None,
                Sampler::DpmPp3mSde,
                ScheduleKind::Karras,
            ),
            (
                Some("Euler a"),
                Some("sgm_uniform"),
                Sampler::EulerAncestral,
                ScheduleKind::SgmUniform,
            ),
            (Some("UniPC"), None, Sampler::UniPc, ScheduleKind::Default),
            (
                Some("DPM2 a"),
                None,
                Sampler::Dpm2Ancestral,
                ScheduleKind::Karras,
            ),
            (Some("LCM"), None, Sampler::Lcm, ScheduleKind::Default),
        ];
        for (name, scheduler, sampler, schedule) in ok {
            assert_eq!(
                resolve_sampler(name, scheduler),
                Ok((sampler, schedule)),
                "{name:?} {scheduler:?}"
            );
        }
        let e = resolve_sampler(Some("DPM fast"), None).unwrap_err();
        assert!(
            e.detail.contains("\"Euler\", \"Euler a\", \"Heun\""),
            "{}",
            e.detail
        );
        assert!(resolve_sampler(Some("Euler"), Some("kl_optimal")).is_err());
        assert!(resolve_sampler(Some("Euler"), Some("nonsense")).is_err());
    }
}
