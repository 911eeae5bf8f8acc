//! Flag values the library spells ([`Spelled`] enums: `--backend`, `--sampler`'s schedule,
//! `--vae-tiling`, ...): clap's possible values, with their help, come from the library's table,
//! and parsing goes through the enum's `FromStr`, so the library needs no argument parser.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use sdxl_wgpu::spelling::Spelled;

/// A value parser for `T`: its spellings as possible values, each with its description.
pub fn spelled<T>() -> impl TypedValueParser<Value = T>
where
    T: Spelled + std::str::FromStr<Err = sdxl_wgpu::spelling::UnknownSpelling> + Send + Sync,
{
    let values = T::SPELLINGS.iter().map(|&(_, name, help)| {
        let value = PossibleValue::new(name);
        if help.is_empty() {
            value
        } else {
            value.help(help)
        }
    });
    PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}
