//! The quantities a request sets, named once for the whole library. An error about a value the
//! user gave carries the [`Field`] it came from, never a front-end's spelling of it: the library
//! writes "guidance scale -1", the command line "--cfg -1", an A1111 client reads "cfg_scale -1".
//! Each front-end spells the fields through one table of its own ([`FieldNames`]) when it shows
//! an error ([`Described::describe`]).

/// A quantity of a request that a user sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Width,
    Height,
    Cfg,
    CfgRescale,
    Batch,
    Strength,
    Steps,
    HiresScale,
    HiresSteps,
    HiresDenoise,
    HiresUpscaler,
    Schedule,
    ClipSkip,
    InitNoise,
    Backend,
    LoraFolder,
    UpscalerFolder,
    Mask,
    MaskBlur,
}

/// One front-end's spelling of every field.
pub trait FieldNames {
    fn spell(&self, field: Field) -> &'static str;
}

/// The quantities' own names, which the library's messages use (`Display`).
pub struct Quantities;

impl FieldNames for Quantities {
    fn spell(&self, field: Field) -> &'static str {
        match field {
            Field::Width => "width",
            Field::Height => "height",
            Field::Cfg => "guidance scale",
            Field::CfgRescale => "guidance rescale",
            Field::Batch => "batch size",
            Field::Strength => "strength",
            Field::Steps => "steps",
            Field::HiresScale => "hires scale",
            Field::HiresSteps => "hires steps",
            Field::HiresDenoise => "hires denoising strength",
            Field::HiresUpscaler => "hires upscaler",
            Field::Schedule => "schedule",
            Field::ClipSkip => "CLIP skip",
            Field::InitNoise => "initial noise",
            Field::Backend => "graphics API",
            Field::LoraFolder => "the LoRA folder",
            Field::UpscalerFolder => "the upscaler folder",
            Field::Mask => "inpainting mask",
            Field::MaskBlur => "mask blur",
        }
    }
}

/// An error whose message names fields: written with any front-end's spellings.
pub trait Described {
    /// The message, each field spelled by `names`.
    fn describe(&self, names: &dyn FieldNames) -> String;
}
