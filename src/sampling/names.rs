//! Sampler names users type: ours (`euler_a`, `dpmpp_2m`), ComfyUI's (`euler_ancestral`) and
//! A1111's display names (`Euler a`, `DPM++ 2M Karras`, where a ` Karras` suffix picks the
//! schedule), and A1111's names back for image metadata.

use std::fmt;
use std::str::FromStr;

use super::{Sampler, ScheduleKind};

/// A parsed `--sampler` value: the sampler, and the schedule when the name carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerChoice {
    pub sampler: Sampler,
    pub schedule: Option<ScheduleKind>,
}

/// Accepted spellings (compared case-insensitively, spaces and `_`/`-` alike).
const NAMES: [(&str, Sampler); 10] = [
    ("euler", Sampler::Euler),
    ("euler_a", Sampler::EulerAncestral),
    ("euler_ancestral", Sampler::EulerAncestral),
    ("euler ancestral", Sampler::EulerAncestral),
    ("k_euler", Sampler::Euler),
    ("k_euler_a", Sampler::EulerAncestral),
    ("dpmpp_2m", Sampler::DpmPp2m),
    ("dpm++ 2m", Sampler::DpmPp2m),
    ("k_dpmpp_2m", Sampler::DpmPp2m),
    ("ddim", Sampler::Ddim),
];

fn canonical(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name no table row matches.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown sampler {0:?}; use euler, euler_a, dpmpp_2m or ddim (A1111 names such as \"Euler a\" or \"DPM++ 2M Karras\" work too)")]
pub struct UnknownSampler(pub String);

impl FromStr for SamplerChoice {
    type Err = UnknownSampler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = canonical(s);
        let (base, schedule) = match name.strip_suffix(" karras") {
            Some(base) => (base.to_string(), Some(ScheduleKind::Karras)),
            None => (name, None),
        };
        NAMES
            .iter()
            .find(|(n, _)| canonical(n) == base)
            .map(|&(_, sampler)| SamplerChoice { sampler, schedule })
            .ok_or_else(|| UnknownSampler(s.to_string()))
    }
}

impl fmt::Display for SamplerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.schedule {
            Some(ScheduleKind::Karras) => write!(f, "{} karras", self.sampler),
            _ => write!(f, "{}", self.sampler),
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

impl Sampler {
    /// A1111's display name (infotext `Sampler:`).
    pub fn a1111_name(self) -> &'static str {
        match self {
            Sampler::Euler => "Euler",
            Sampler::EulerAncestral => "Euler a",
            Sampler::DpmPp2m => "DPM++ 2M",
            Sampler::Ddim => "DDIM",
        }
    }
}

impl ScheduleKind {
    /// A1111's `Schedule type:` (its "Automatic" is the sampler's own schedule).
    pub fn a1111_name(self) -> &'static str {
        match self {
            ScheduleKind::Default => "Automatic",
            ScheduleKind::Karras => "Karras",
        }
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
        for bad in ["", "karras", "DPM++ SDE", "euler_b", "unipc"] {
            assert!(bad.parse::<SamplerChoice>().is_err(), "{bad}");
        }
        // our own names round-trip
        for s in ["euler", "euler_a", "dpmpp_2m karras", "ddim"] {
            assert_eq!(s.parse::<SamplerChoice>().expect(s).to_string(), s);
        }
    }
}
