//! What can go wrong turning prompts into conditioning; all of it caused by the request.

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(
        "--clip-skip {requested} is out of range: these text encoders have {layers} layers, so at \
         most {max} more can be skipped beyond SDXL's default penultimate layer (diffusers' \
         meaning; A1111's \"Clip skip N\" is N - 1 here)"
    )]
    ClipSkip {
        requested: usize,
        layers: usize,
        max: usize,
    },
    #[error("prompt weight of {text:?} is {weight}, which is not a finite number (too many nested brackets?)")]
    Weight { text: String, weight: f32 },
    #[error("text_encoder_2 has no text_projection, so it cannot give SDXL's pooled embedding")]
    NoProjection,
}
