//! The model profiles as data: each rule's bounds and what an out-of-range value becomes, and
//! the presets. `anime` is the baseline table (README, "Quality policy"); `illustrious` follows the published
//! recommendations for Illustrious XL / NoobAI derivatives (CFG about 4-7); `vpred` those for
//! NoobAI-XL V-Pred (CFG 4-5); `off` corrects nothing.

use super::{Bound, Preset, Profile, Settings};

const STANDARD: Settings = Settings {
    width: 768,
    height: 768,
    cfg: 7.0,
    steps: 25,
};
const HIGH: Settings = Settings {
    width: 1024,
    height: 1024,
    cfg: 7.5,
    steps: 30,
};
const STEPS: Bound<usize> = Bound {
    min: 20,
    below_to: 25,
    max: 40,
    above_to: 35,
};

/// The baseline rules for anime SDXL checkpoints (Animagine, Pony and their merges).
pub const ANIME: Profile = Profile {
    name: "anime",
    min_side: Some(768),
    cfg: Some(Bound {
        min: 6.0,
        below_to: 7.0,
        max: 10.0,
        above_to: 7.5,
    }),
    steps: Some(STEPS),
    lora_weight: Some((0.5, 1.0)),
    standard: STANDARD,
    high: HIGH,
};

/// Illustrious XL / NoobAI-style checkpoints, which want lower guidance.
pub const ILLUSTRIOUS: Profile = Profile {
    name: "illustrious",
    min_side: Some(768),
    cfg: Some(Bound {
        min: 4.0,
        below_to: 5.0,
        max: 7.0,
        above_to: 6.0,
    }),
    steps: Some(STEPS),
    lora_weight: Some((0.5, 1.0)),
    standard: Settings {
        cfg: 5.0,
        ..STANDARD
    },
    high: Settings { cfg: 5.5, ..HIGH },
};

/// v-prediction checkpoints (NoobAI-XL V-Pred 1.0 and its merges), whose model card asks for
/// CFG 4-5 and 28-35 steps, at about 1024x1024 (higher guidance burns the image).
pub const VPRED: Profile = Profile {
    name: "vpred",
    min_side: Some(768),
    cfg: Some(Bound {
        min: 3.0,
        below_to: 4.0,
        max: 5.5,
        above_to: 5.0,
    }),
    steps: Some(STEPS),
    lora_weight: Some((0.5, 1.0)),
    standard: Settings {
        cfg: 4.5,
        ..STANDARD
    },
    high: Settings { cfg: 4.5, ..HIGH },
};

/// No corrections and no warnings; the presets are the anime ones.
pub const OFF: Profile = Profile {
    name: "off",
    min_side: None,
    cfg: None,
    steps: None,
    lora_weight: None,
    standard: STANDARD,
    high: HIGH,
};

impl Preset {
    /// The preset's settings under `profile`.
    pub fn settings(self, profile: &Profile) -> Settings {
        match self {
            Preset::Standard => profile.standard,
            Preset::High => profile.high,
        }
    }
}
