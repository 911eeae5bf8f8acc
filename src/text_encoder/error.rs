//! What can go wrong turning prompts into conditioning; all of it caused by the request.

use crate::field::{Described, Field, FieldNames, Quantities};

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{}", self.describe(&Quantities))]
    ClipSkip {
        requested: usize,
        layers: usize,
        max: usize,
    },
    #[error(
        "prompt weight of {text:?} is {weight}, outside the -{max}..{max} this engine accepts \
         (each level of brackets multiplies by 1.1: too many nested brackets?)"
    )]
    Weight { text: String, weight: f32, max: f32 },
    #[error("the {which} is {bytes} bytes; at most {max} are read")]
    PromptTooLong {
        which: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("the {which} fills {chunks} chunks of 75 tokens; at most {max} are encoded")]
    TooManyChunks {
        which: &'static str,
        chunks: usize,
        max: usize,
    },
    #[error("text_encoder_2 has no text_projection, so it cannot give SDXL's pooled embedding")]
    NoProjection,
}

impl Described for TextError {
    /// The CLIP skip named as `names` spells it; every other error as it displays.
    fn describe(&self, names: &dyn FieldNames) -> String {
        match self {
            Self::ClipSkip {
                requested,
                layers,
                max,
            } => format!(
                "{} {requested} is out of range: these text encoders have {layers} layers, so at \
                 most {max} more can be skipped beyond SDXL's default penultimate layer \
                 (diffusers' meaning; A1111's \"Clip skip N\" is N - 1 here)",
                names.spell(Field::ClipSkip)
            ),
            other => other.to_string(),
        }
    }
}
