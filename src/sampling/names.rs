//! Sampler names users type: ours (`euler_a`, `dpmpp_2m`), ComfyUI's (`euler_ancestral`) and
//! A1111's display names (`Euler a`, `DPM++ 2M Karras`, where a ` Karras` suffix picks the
//! schedule): the one parser of "sampler + schedule", for the command line, jobs files and
//! A1111's API.

use std::fmt;
use std::str::FromStr;

use super::schedule_kinds::{schedule_row, ScheduleSpec};
use super::{Sampler, ScheduleKind, SAMPLERS};

/// A parsed `--sampler` value: the sampler, and the schedule when the name carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerChoice {
    pub sampler: Sampler,
    pub schedule: Option<ScheduleKind>,
}

/// A name in canonical spelling: lower case, `_` and `-` as spaces, single spaces.
pub(super) fn canonical(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name no table row matches.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown sampler {0:?}; use one of {names} (A1111 names such as \"Euler a\" or \"DPM++ 2M Karras\" and ComfyUI's work too)", names = sampler_names())]
pub struct UnknownSampler(pub String);

fn sampler_names() -> String {
    SAMPLERS.map(|s| s.name).join(", ")
}

/// The sampler `name` spells (ours, ComfyUI's, A1111's or an alias; canonical spelling).
fn lookup(name: &str) -> Option<Sampler> {
    SAMPLERS
        .iter()
        .find(|s| {
            [s.name, s.comfy, s.a1111]
                .iter()
                .chain(s.aliases)
                .any(|n| canonical(n) == name)
        })
        .map(|s| s.sampler)
}

impl FromStr for Sampler {
    type Err = UnknownSampler;

    /// Any of the sampler's names, without a schedule suffix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        lookup(&canonical(s)).ok_or_else(|| UnknownSampler(s.to_string()))
    }
}

/// The sampler a name spells and the schedule row its suffix names (`DPM++ 2M Karras`,
/// `dpmpp_2m_sgm_uniform`; any row of [`crate::sampling::SCHEDULES`], run here or not), in any
/// of the ecosystems' spellings; a sampler whose own name ends like a schedule keeps it.
pub fn parse_sampler_name(
    s: &str,
) -> Result<(Sampler, Option<&'static ScheduleSpec>), UnknownSampler> {
    let name = canonical(s);
    let suffixed = name.match_indices(' ').find_map(|(at, _)| {
        let row = schedule_row(&name[at + 1..])?;
        Some((lookup(&name[..at])?, row))
    });
    match suffixed {
        Some((sampler, row)) => Ok((sampler, Some(row))),
        None => lookup(&name)
            .map(|sampler| (sampler, None))
            .ok_or_else(|| UnknownSampler(s.to_string())),
    }
}

impl FromStr for SamplerChoice {
    type Err = UnknownSampler;

    /// A sampler name, with a schedule we run as its suffix or none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_sampler_name(s)? {
            (sampler, None) => Ok(SamplerChoice {
                sampler,
                schedule: None,
            }),
            (sampler, Some(row)) => match row.kind {
                Some(kind) => Ok(SamplerChoice {
                    sampler,
                    schedule: Some(kind),
                }),
                None => Err(UnknownSampler(s.to_string())),
            },
        }
    }
}

impl fmt::Display for SamplerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.schedule {
            None | Some(ScheduleKind::Default) => write!(f, "{}", self.sampler),
            Some(kind) => write!(f, "{} {kind}", self.sampler),
        }
    }
}

impl serde::Serialize for SamplerChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SamplerChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> serde::Deserialize<'de> for Sampler {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling() {
        let table: [(&str, Sampler, Option<ScheduleKind>); 12] = [
            ("euler", Sampler::Euler, None),
            ("Euler", Sampler::Euler, None),
            ("euler_a", Sampler::EulerAncestral, None),
            ("Euler a", Sampler::EulerAncestral, None),
            ("euler_ancestral", Sampler::EulerAncestral, None),
            ("dpmpp_2m", Sampler::DpmPp2m, None),
            ("DPM++ 2M", Sampler::DpmPp2m, None),
            (
                "DPM++ 2M Karras",
                Sampler::DpmPp2m,
                Some(ScheduleKind::Karras),
            ),
            (
                "dpmpp_2m_karras",
                Sampler::DpmPp2m,
                Some(ScheduleKind::Karras),
            ),
            (
                "  dpm++   2m  karras ",
                Sampler::DpmPp2m,
                Some(ScheduleKind::Karras),
            ),
            ("Euler Karras", Sampler::Euler, Some(ScheduleKind::Karras)),
            ("DDIM", Sampler::Ddim, None),
        ];
        for (name, sampler, schedule) in table {
            assert_eq!(
                name.parse::<SamplerChoice>(),
                Ok(SamplerChoice { sampler, schedule }),
                "{name}"
            );
        }
        assert_eq!(
            "euler_a_sgm_uniform".parse::<SamplerChoice>(),
            Ok(SamplerChoice {
                sampler: Sampler::EulerAncestral,
                schedule: Some(ScheduleKind::SgmUniform)
            })
        );
        assert_eq!(
            "DPM++ 2M Exponential".parse::<SamplerChoice>(),
            Ok(SamplerChoice {
                sampler: Sampler::DpmPp2m,
                schedule: Some(ScheduleKind::Exponential)
            })
        );
        for bad in ["", "karras", "DPM++ SDE", "euler_b", "unipc_x"] {
            assert!(bad.parse::<SamplerChoice>().is_err(), "{bad}");
        }
        // our own names round-trip
        for s in [
            "euler",
            "euler_a",
            "dpmpp_2m karras",
            "ddim",
            "euler sgm_uniform",
        ] {
            assert_eq!(s.parse::<SamplerChoice>().expect(s).to_string(), s);
        }
    }
}
