//! The quality policy: parameters known to break SDXL anime images (512x512, CFG 2
//! or 15, 8 steps) are corrected before generation, each correction reported as old -> new and
//! recorded in the image's metadata; LoRA weights outside the recommended range are warned
//! about, never changed. [`apply`] is a pure function of the settings and a profile; the
//! profiles are data in [`profiles`].

mod profiles;

pub use profiles::{ANIME, ILLUSTRIOUS, OFF, VPRED};

use std::fmt;

use crate::sampling::Prediction;
use crate::tokenizer::LoraSpec;

/// The parameters the policy looks at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub width: usize,
    pub height: usize,
    pub cfg: f32,
    pub steps: usize,
}

/// A recommended range `[min, max]` and what a value outside it becomes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound<T> {
    pub min: T,
    pub below_to: T,
    pub max: T,
    pub above_to: T,
}

impl<T: PartialOrd + Copy> Bound<T> {
    fn correct(&self, value: T) -> Option<T> {
        if value < self.min {
            Some(self.below_to)
        } else if value > self.max {
            Some(self.above_to)
        } else {
            None
        }
    }
}

/// One model family's rules and presets. `None` disables a rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// If width or height is below this, both become at least this.
    pub min_side: Option<usize>,
    pub cfg: Option<Bound<f32>>,
    pub steps: Option<Bound<usize>>,
    /// Recommended LoRA weights (warned about outside, never changed).
    pub lora_weight: Option<(f32, f32)>,
    pub standard: Settings,
    pub high: Settings,
}

/// `--policy`: which profile corrects the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyName {
    #[default]
    Anime,
    Illustrious,
    Vpred,
    Off,
}

crate::spelled! {
    PolicyName, "policy",
    (PolicyName::Anime, "anime", "Animagine, Pony and their merges (the default for epsilon-prediction checkpoints)"),
    (PolicyName::Illustrious, "illustrious", "Illustrious XL / NoobAI epsilon checkpoints: lower CFG"),
    (PolicyName::Vpred, "vpred", "v-prediction checkpoints (NoobAI-XL V-Pred and merges): CFG 4-5.5 (the default for them)"),
    (PolicyName::Off, "off", "No corrections"),
}

impl PolicyName {
    pub fn profile(self) -> &'static Profile {
        match self {
            PolicyName::Anime => &ANIME,
            PolicyName::Illustrious => &ILLUSTRIOUS,
            PolicyName::Vpred => &VPRED,
            PolicyName::Off => &OFF,
        }
    }

    /// The profile for a checkpoint that predicts `prediction` (its markers or scheduler
    /// config say which), and why: what `--policy` defaults to.
    pub fn for_model(prediction: Prediction) -> (Self, &'static str) {
        match prediction {
            Prediction::V => (PolicyName::Vpred, "the checkpoint is v-prediction"),
            Prediction::Epsilon => (PolicyName::Anime, "the default for epsilon checkpoints"),
        }
    }
}

/// `--preset`: a named set of defaults for size, CFG and steps (meanings: the table below).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Standard,
    #[default]
    High,
}

crate::spelled! {
    Preset, "preset",
    (Preset::Standard, "standard", "768x768, CFG 7.0, 25 steps (anime profile)"),
    (Preset::High, "high", "1024x1024, CFG 7.5, 30 steps (anime profile)"),
}

/// A changed parameter.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Correction {
    pub parameter: &'static str,
    pub old: String,
    pub new: String,
}

impl fmt::Display for Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.parameter, self.old, self.new)
    }
}

/// What the policy decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub settings: Settings,
    pub corrections: Vec<Correction>,
    /// Advice that changes nothing (LoRA weights).
    pub warnings: Vec<String>,
}

/// Applies `profile` to `settings` (and checks the weights of `loras`).
pub fn apply(settings: Settings, loras: &[LoraSpec], profile: &Profile) -> Outcome {
    let mut out = settings;
    let mut corrections = Vec::new();
    if let Some(min) = profile.min_side {
        if settings.width < min || settings.height < min {
            out.width = settings.width.max(min);
            out.height = settings.height.max(min);
            for (parameter, old, new) in [
                ("width", settings.width, out.width),
                ("height", settings.height, out.height),
            ] {
                if old != new {
                    corrections.push(Correction {
                        parameter,
                        old: old.to_string(),
                        new: new.to_string(),
                    });
                }
            }
        }
    }
    if let Some(new) = profile.cfg.and_then(|b| b.correct(settings.cfg)) {
        out.cfg = new;
        corrections.push(Correction {
            parameter: "cfg",
            old: settings.cfg.to_string(),
            new: new.to_string(),
        });
    }
    if let Some(new) = profile.steps.and_then(|b| b.correct(settings.steps)) {
        out.steps = new;
        corrections.push(Correction {
            parameter: "steps",
            old: settings.steps.to_string(),
            new: new.to_string(),
        });
    }
    let mut warnings = Vec::new();
    if let Some((low, high)) = profile.lora_weight {
        for lora in loras {
            for (part, weight) in [
                ("text encoder", lora.text_encoder_weight),
                ("UNet", lora.unet_weight),
            ] {
                if !(low..=high).contains(&weight) {
                    warnings.push(format!(
                        "LoRA {} {part} weight {weight} is outside the recommended {low}-{high} \
                         (0.8-1.0 for a clear effect); left as is",
                        lora.name()
                    ));
                }
            }
        }
    }
    Outcome {
        settings: out,
        corrections,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Settings = Settings {
        width: 1024,
        height: 1024,
        cfg: 7.0,
        steps: 28,
    };

    fn corrected(settings: Settings, profile: &Profile) -> (Settings, Vec<String>) {
        let out = apply(settings, &[], profile);
        let text = out.corrections.iter().map(|c| c.to_string()).collect();
        (out.settings, text)
    }

    #[test]
    fn sizes_at_the_boundary() {
        // (width, height) -> (width, height, corrections)
        type Row = ((usize, usize), (usize, usize), &'static [&'static str]);
        let table: [Row; 7] = [
            ((768, 768), (768, 768), &[]),
            ((767, 768), (768, 768), &["width 767 -> 768"]),
            ((768, 767), (768, 768), &["height 767 -> 768"]),
            (
                (512, 512),
                (768, 768),
                &["width 512 -> 768", "height 512 -> 768"],
            ),
            ((512, 1024), (768, 1024), &["width 512 -> 768"]),
            ((1216, 512), (1216, 768), &["height 512 -> 768"]),
            ((2048, 1024), (2048, 1024), &[]),
        ];
        for ((w, h), (want_w, want_h), want) in table {
            let settings = Settings {
                width: w,
                height: h,
                ..OK
            };
            let (got, text) = corrected(settings, &ANIME);
            assert_eq!((got.width, got.height), (want_w, want_h), "{w}x{h}");
            assert_eq!(text, want, "{w}x{h}");
        }
    }

    #[test]
    fn cfg_at_the_boundary() {
        let anime: [(f32, f32); 8] = [
            (0.0, 7.0),
            (2.0, 7.0),
            (5.99, 7.0),
            (6.0, 6.0),
            (8.0, 8.0),
            (10.0, 10.0),
            (10.01, 7.5),
            (15.0, 7.5),
        ];
        for (cfg, want) in anime {
            let (got, text) = corrected(Settings { cfg, ..OK }, &ANIME);
            assert_eq!(got.cfg, want, "cfg {cfg}");
            assert_eq!(text.len(), usize::from(cfg != want), "cfg {cfg}: {text:?}");
        }
        let (_, text) = corrected(Settings { cfg: 5.99, ..OK }, &ANIME);
        assert_eq!(text, ["cfg 5.99 -> 7"]);
        let illustrious: [(f32, f32); 6] = [
            (3.99, 5.0),
            (4.0, 4.0),
            (5.5, 5.5),
            (7.0, 7.0),
            (7.01, 6.0),
            (7.5, 6.0),
        ];
        for (cfg, want) in illustrious {
            assert_eq!(
                corrected(Settings { cfg, ..OK }, &ILLUSTRIOUS).0.cfg,
                want,
                "{cfg}"
            );
        }
    }

    #[test]
    fn steps_at_the_boundary() {
        let table: [(usize, usize); 8] = [
            (1, 25),
            (8, 25),
            (19, 25),
            (20, 20),
            (30, 30),
            (40, 40),
            (41, 35),
            (150, 35),
        ];
        for profile in [&ANIME, &ILLUSTRIOUS] {
            for (steps, want) in table {
                let (got, text) = corrected(Settings { steps, ..OK }, profile);
                assert_eq!(got.steps, want, "{} steps {steps}", profile.name);
                let expect: Vec<String> = if steps == want {
                    vec![]
                } else {
                    vec![format!("steps {steps} -> {want}")]
                };
                assert_eq!(text, expect);
            }
        }
    }

    #[test]
    fn everything_at_once_and_off() {
        let bad = Settings {
            width: 512,
            height: 512,
            cfg: 2.0,
            steps: 8,
        };
        let (got, text) = corrected(bad, &ANIME);
        assert_eq!(
            got,
            Settings {
                width: 768,
                height: 768,
                cfg: 7.0,
                steps: 25
            }
        );
        assert_eq!(
            text,
            [
                "width 512 -> 768",
                "height 512 -> 768",
                "cfg 2 -> 7",
                "steps 8 -> 25"
            ]
        );
        let (got, text) = corrected(bad, &OFF);
        assert_eq!(got, bad);
        assert!(text.is_empty());
    }

    #[test]
    fn presets_need_no_correction() {
        for profile in [&ANIME, &ILLUSTRIOUS, &OFF] {
            for preset in [Preset::Standard, Preset::High] {
                let settings = preset.settings(profile);
                assert_eq!(apply(settings, &[], profile).settings, settings);
            }
        }
        assert_eq!(
            Preset::Standard.settings(&ANIME),
            Settings {
                width: 768,
                height: 768,
                cfg: 7.0,
                steps: 25
            }
        );
        assert_eq!(
            Preset::High.settings(&ANIME),
            Settings {
                width: 1024,
                height: 1024,
                cfg: 7.5,
                steps: 30
            }
        );
    }

    #[test]
    fn lora_weights_warn_and_stay() {
        let lora = |w: f32| LoraSpec {
            path: "style.safetensors".into(),
            unet_weight: w,
            text_encoder_weight: w,
        };
        let table: [(f32, usize); 6] = [
            (0.49, 2),
            (0.5, 0),
            (0.8, 0),
            (1.0, 0),
            (1.01, 2),
            (-1.0, 2),
        ];
        for (w, warnings) in table {
            let out = apply(OK, &[lora(w)], &ANIME);
            assert_eq!(
                out.warnings.len(),
                warnings,
                "weight {w}: {:?}",
                out.warnings
            );
            assert_eq!(out.settings, OK);
            assert!(out.corrections.is_empty());
            assert!(apply(OK, &[lora(w)], &OFF).warnings.is_empty());
        }
    }
}
