//! A1111's sampler and scheduler names -> ours, through the crate's tables ([`SAMPLERS`],
//! [`SCHEDULES`]) and its one parser of "sampler + schedule" names. A1111 splits a scheduler
//! suffix off the sampler name (`"DPM++ 2M Karras"`), takes the `scheduler` field by name or
//! label, and runs "Automatic" as the sampler's own default schedule (DPM++ 2M: Karras)
//! (`get_sampler_and_scheduler` in A1111 v1.10 `modules/sd_samplers.py`). Where A1111 falls back
//! silently on an unknown name, we answer 422 with the names we run.

use serde_json::{json, Value};

use crate::sampling::{parse_sampler_name, Sampler, ScheduleKind, SAMPLERS, SCHEDULES};
use crate::server::error::ApiError;

fn sampler_names() -> String {
    SAMPLERS.map(|s| format!("{:?}", s.a1111)).join(", ")
}

fn scheduler_names() -> String {
    SCHEDULES
        .iter()
        .filter(|row| row.kind.is_some())
        .map(|row| format!("{:?}", row.a1111_label))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(sampler, schedule)` for A1111's `sampler_name` (or `sampler_index`; default "Euler") and
/// `scheduler` (default Automatic): a schedule suffix on the sampler name wins, as in A1111.
pub fn resolve_sampler(
    name: Option<&str>,
    scheduler: Option<&str>,
) -> Result<(Sampler, ScheduleKind), ApiError> {
    let scheduler = scheduler.map(str::trim).filter(|s| !s.is_empty());
    let asked = match scheduler {
        None => None,
        Some(s) => Some(
            SCHEDULES
                .iter()
                .find(|row| {
                    std::iter::once(row.a1111)
                        .chain(std::iter::once(row.a1111_label))
                        .chain(row.aliases.iter().copied())
                        .any(|n| n.eq_ignore_ascii_case(s))
                })
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "scheduler: unknown scheduler {s:?}; this server runs {}",
                        scheduler_names()
                    ))
                })?,
        ),
    };
    let name = name.unwrap_or("Euler").trim();
    let (sampler, suffix) = parse_sampler_name(name).map_err(|_| {
        ApiError::invalid(format!(
            "sampler_name: unknown sampler {name:?}; this server runs {}",
            sampler_names()
        ))
    })?;
    let row = sampler.spec();
    match suffix.or(asked).map(|r| (r, r.kind)) {
        None | Some((_, Some(ScheduleKind::Default))) => Ok((sampler, row.a1111_automatic)),
        Some((_, Some(kind))) => Ok((sampler, kind)),
        Some((r, None)) => Err(ApiError::invalid(format!(
            "scheduler: {:?} is not supported; this server runs {}",
            r.a1111_label,
            scheduler_names()
        ))),
    }
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
        SCHEDULES
            .iter()
            .filter(|row| row.kind.is_some())
            .map(|row| {
                let aliases = (!row.aliases.is_empty()).then_some(row.aliases);
                json!({"name": row.a1111, "label": row.a1111_label, "aliases": aliases,
                       "default_rho": row.default_rho, "need_inner_model": row.need_inner_model})
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
