//! The one order from what a user asked to a checked request, for every front door: the values
//! as given are checked first (a malformed value is an error whatever the quality policy would
//! make of it), then the policy corrects what is valid but poor, then the front-end builds the
//! request from the corrected values, then the request's own checks run.

use crate::lora::LoraSpec;
use crate::pipeline::{check_settings, Error, Request};
use crate::policy::{self, Correction, Profile, Settings};

/// A checked request and what the policy did on the way.
#[derive(Debug)]
pub struct Planned {
    pub request: Request,
    pub corrections: Vec<Correction>,
    /// Advice that changed nothing (LoRA weights).
    pub warnings: Vec<String>,
}

/// `asked` (with `loras`) through `profile`'s policy into the request `build` makes of the
/// corrected settings; `refuse` turns a failed check into the front-end's error.
pub fn plan<E>(
    asked: Settings,
    loras: Vec<LoraSpec>,
    profile: &Profile,
    refuse: impl Fn(Error) -> E,
    build: impl FnOnce(Settings, Vec<LoraSpec>) -> Result<Request, E>,
) -> Result<Planned, E> {
    check_settings(&asked).map_err(&refuse)?;
    let outcome = policy::apply(asked, &loras, profile);
    let request = build(outcome.settings, loras)?;
    request.check().map_err(&refuse)?;
    Ok(Planned {
        request,
        corrections: outcome.corrections,
        warnings: outcome.warnings,
    })
}
