//! What the UNet predicts at each step, which decides how its output is read: the noise
//! (epsilon) or the velocity (v). A checkpoint's markers tell which; `--prediction` overrides.

use serde::Serialize;

/// What the model predicts at each step (spellings and meanings: the table below).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Prediction {
    Epsilon,
    V,
}

crate::spelled! {
    Prediction, "prediction type",
    (Prediction::Epsilon, "eps", "The noise (SDXL base and most community models)"),
    (Prediction::V, "v", "The velocity (NoobAI-XL v-pred and other v-prediction fine-tunes)"),
}
