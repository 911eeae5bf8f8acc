//! What every front door (the command line, a jobs file, A1111's API, the jobs API, a NATS
//! worker) does the same way between what a user asks and the engine's `Request`: the one form
//! of what a user asks ([`Asked`], with its field table), resolving prompt tags' LoRA names in a
//! folder ([`LoraFolder`]), and the order of checks, quality policy and request ([`plan`]). Errors name the fields, which each front-end spells
//! ([`crate::field`]).

mod asked;
mod lora_folder;
mod plan;
mod upscaler_folder;

pub use asked::{
    parse_prompt, random_seed, Asked, AskedField, Inputs, Pictures, ValueKind, ASKED_FIELDS,
    DEFAULT_HIRES_SCALE,
};
pub use lora_folder::{LoraEntry, LoraFolder};
pub use plan::{plan, Planned};
pub use upscaler_folder::{UpscalerEntry, UpscalerFolder};

use crate::field::{Described, Field, FieldNames, Quantities};
use crate::lora::LoraError;

/// Why what a user asked cannot become a request; all caused by the request.
#[derive(Debug)]
pub enum IntakeError {
    /// A tag's name holds folders.
    LoraName {
        name: String,
    },
    /// No file of the folder has the tag's name as its stem or alias.
    LoraNotFound {
        name: String,
        file: String,
    },
    /// One prompt names a LoRA twice.
    LoraTwice {
        name: String,
    },
    Lora(LoraError),
    /// A hires upscaler name that is no built-in one and no model of the folder.
    UpscalerNotFound {
        name: String,
        known: Vec<String>,
    },
}

impl From<LoraError> for IntakeError {
    fn from(e: LoraError) -> Self {
        IntakeError::Lora(e)
    }
}

impl Described for IntakeError {
    fn describe(&self, names: &dyn FieldNames) -> String {
        let folder = names.spell(Field::LoraFolder);
        match self {
            Self::LoraName { name } => format!(
                "LoRA `{name}` (<lora:{name}:...>): a name is a file name inside {folder}, \
                 without folders"
            ),
            Self::LoraNotFound { name, file } => format!(
                "<lora:{name}:...>: no LoRA {name:?} in {folder} ({file}: no such file, and no \
                 file there has that alias)"
            ),
            Self::LoraTwice { name } => {
                format!("<lora:{name}:...>: the LoRA is named twice in one prompt; name it once")
            }
            Self::Lora(e) => e.to_string(),
            Self::UpscalerNotFound { name, known } => format!(
                "{} {name:?}: no built-in upscaler and no model of {} has that name; known: {}",
                names.spell(Field::HiresUpscaler),
                names.spell(Field::UpscalerFolder),
                known.join(", ")
            ),
        }
    }
}

impl std::fmt::Display for IntakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(&Quantities))
    }
}

impl std::error::Error for IntakeError {}
