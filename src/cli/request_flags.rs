//! The intake's request fields as `generate`'s flags: one flag per row of the library's table
//! ([`ASKED_FIELDS`]: `--NAME` with `-` for `_`, its help and how its value is written), read
//! back into the library's form ([`Asked`]) through serde, as a jobs line is. A new request field
//! becomes a flag here without an edit.

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use sdxl_wgpu::intake::{Asked, AskedField, ValueKind, ASKED_FIELDS};
use sdxl_wgpu::sampling::SamplerChoice;

/// [`Asked`] as flags.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestFlags(pub Asked);

impl Args for RequestFlags {
    fn augment_args(cmd: Command) -> Command {
        ASKED_FIELDS
            .iter()
            .fold(cmd, |cmd, field| cmd.arg(flag(field)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for RequestFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Map::new();
        for field in &ASKED_FIELDS {
            if let Some(value) = value(matches, field)? {
                given.insert(field.name.into(), value);
            }
        }
        serde_json::from_value(Value::Object(given))
            .map(RequestFlags)
            .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, e))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The flag of `field`, its value checked as the field's kind.
fn flag(field: &AskedField) -> Arg {
    let arg = Arg::new(field.name)
        .long(field.name.replace('_', "-"))
        .value_name(field.name.to_uppercase())
        .help(field.help)
        .action(ArgAction::Set);
    match field.kind {
        ValueKind::Switch => arg.action(ArgAction::SetTrue).value_name(None::<&str>),
        ValueKind::Text => arg,
        ValueKind::Count => arg.value_parser(clap::value_parser!(u64)),
        ValueKind::Number => arg.allow_negative_numbers(true).value_parser(finite),
        ValueKind::Sampler => {
            arg.value_parser(|s: &str| s.parse::<SamplerChoice>().map(|_| s.to_string()))
        }
        ValueKind::Spelled(spellings) => {
            let values = spellings().into_iter().map(|(name, help)| {
                let value = PossibleValue::new(name);
                match help.is_empty() {
                    true => value,
                    false => value.help(help),
                }
            });
            arg.value_parser(PossibleValuesParser::new(values))
        }
    }
}

/// A finite number.
fn finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err("not a finite number".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `field`'s value as given, as JSON (`None`: not given).
fn value(matches: &ArgMatches, field: &AskedField) -> Result<Option<Value>, clap::Error> {
    let wrong = |e| clap::Error::raw(ErrorKind::ValueValidation, e);
    Ok(match field.kind {
        ValueKind::Count => matches
            .try_get_one::<u64>(field.name)
            .map_err(wrong)?
            .map(|&n| n.into()),
        ValueKind::Number => matches
            .try_get_one::<f64>(field.name)
            .map_err(wrong)?
            .map(|&x| x.into()),
        // a switch not given is unset, so a jobs line's value stays
        ValueKind::Switch => matches
            .try_get_one::<bool>(field.name)
            .map_err(wrong)?
            .and_then(|&on| on.then_some(true.into())),
        _ => matches
            .try_get_one::<String>(field.name)
            .map_err(wrong)?
            .map(|s| s.as_str().into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        request: RequestFlags,
    }

    #[test]
    fn flags_read_into_the_form() {
        let cli = Cli::try_parse_from([
            "x",
            "--prompt",
            "a cat",
            "--cfg=-1",
            "--steps",
            "4",
            "--sampler",
            "DPM++ 2M Karras",
            "--vae-tiling",
            "on",
            "--invert-mask",
        ])
        .expect("parses");
        let asked = cli.request.0;
        assert_eq!(asked.prompt.as_deref(), Some("a cat"));
        assert_eq!((asked.cfg, asked.steps), (Some(-1.0), Some(4)));
        assert_eq!(
            asked.sampler,
            Some("DPM++ 2M Karras".parse().expect("a sampler"))
        );
        assert_eq!(asked.vae_tiling, Some(sdxl_wgpu::vae::VaeTiling::On));
        assert_eq!(asked.invert_mask, Some(true));
        let plain = Cli::try_parse_from(["x"]).expect("parses");
        assert_eq!(
            plain.request.0.invert_mask, None,
            "a switch not given is unset"
        );
        for bad in [
            ["--steps", "-1"],
            ["--cfg", "inf"],
            ["--schedule", "x"],
            ["--sampler", "no"],
        ] {
            let e = Cli::try_parse_from(["x", bad[0], bad[1]])
                .err()
                .expect("refused");
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }
}
