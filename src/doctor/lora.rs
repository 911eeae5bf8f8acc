//! Each LoRA's checks: its compatibility with the checkpoint (every module finds its layer with
//! the right shapes), then a round trip: load it, generate, go back to no LoRA, generate again.
//! The last image must equal the one before the LoRA bit for bit, and the device memory in use
//! must return to its value before the LoRA: the leaks and collisions users of other engines
//! fight show up here.

use super::model::generation;
use super::{Check, Report};
use crate::device::memory_in_use;
use crate::lora::{AdapterSet, LoraSpec, LoraTable};
use crate::pipeline::Engine;

/// The LoRAs of `loras` that apply to the model `table` describes, each with its verdict in
/// the report (nothing is uploaded).
pub fn compatible<'a>(
    table: &LoraTable,
    loras: &'a [LoraSpec],
    report: &mut Report,
) -> std::io::Result<Vec<&'a LoraSpec>> {
    let mut usable = Vec::new();
    for spec in loras {
        if verdict(table, spec, report)? {
            usable.push(spec);
        }
    }
    Ok(usable)
}

/// Checks each LoRA in turn on `engine` (which is left with no LoRA) against `baseline`, the
/// probe image without a LoRA.
pub fn round_trips(
    engine: &Engine,
    loras: &[&LoraSpec],
    baseline: &[f32],
    report: &mut Report,
) -> std::io::Result<()> {
    for spec in loras {
        round_trip(engine, spec, baseline, report)?;
    }
    Ok(())
}

fn name(spec: &LoraSpec) -> String {
    format!("LoRA {}", spec.path.display())
}

/// The compatibility verdict; false when the LoRA cannot be applied.
fn verdict(table: &LoraTable, spec: &LoraSpec, report: &mut Report) -> std::io::Result<bool> {
    let name = name(spec);
    let file = match AdapterSet::check(spec, table) {
        Ok(file) => file,
        Err(e) => {
            report.add(Check::fail(
                name.to_string(),
                e.to_string(),
                "the file is damaged or made for another model family: download it again, or \
                 use a LoRA trained for SDXL",
            ))?;
            return Ok(false);
        }
    };
    let adapted: Vec<String> = file
        .matched
        .iter()
        .map(|(c, n)| format!("{n} {}", c.describe()))
        .collect();
    let detail = format!("compatible: {} layers", adapted.join(", "));
    report.add(
        if file.unmatched.is_empty() && file.unrecognised.is_empty() {
            Check::pass(name.to_string(), detail)
        } else {
            Check::warn(
                name.to_string(),
                format!(
                "{detail}; {} modules match no layer, {} tensors of unsupported kinds (ignored)",
                file.unmatched.len(),
                file.unrecognised.len()
            ),
                "check that the LoRA was trained for this model's architecture",
            )
        },
    )?;
    Ok(true)
}

/// Load -> generate -> no LoRA -> generate: the image and the memory in use come back.
fn round_trip(
    engine: &Engine,
    spec: &LoraSpec,
    baseline: &[f32],
    report: &mut Report,
) -> std::io::Result<()> {
    let name = name(spec);
    let in_use = |engine: &Engine| memory_in_use(&engine.gpu().device).map(|(used, _)| used);
    let before = in_use(engine);
    if let Err(e) = engine.set_loras(std::slice::from_ref(spec)) {
        let fix = "the file is damaged: download it again";
        return report.add(Check::fail(format!("{name}: load"), e.to_string(), fix));
    }
    let loaded = in_use(engine);
    let with = generation(
        engine,
        std::slice::from_ref(spec),
        &format!("{name}: generate"),
        report,
    )?;
    if let Err(e) = engine.set_loras(&[]) {
        let fix = "report it: removing a LoRA should not fail";
        return report.add(Check::fail(format!("{name}: unload"), e.to_string(), fix));
    }
    let Some(without) = generation(
        engine,
        &[],
        &format!("{name}: generate after unloading"),
        report,
    )?
    else {
        return Ok(());
    };
    let after = in_use(engine);
    let same = bits(&without) == bits(baseline);
    let detail = format!(
        "device memory in use {} before, {} with the LoRA, {} after; image after unloading {} \
         the image before loading{}",
        super::mib(before),
        super::mib(loaded),
        super::mib(after),
        if same { "equals" } else { "differs from" },
        match &with {
            Some(with) if bits(with) == bits(baseline) => " (the LoRA changed nothing)",
            _ => "",
        }
    );
    let fix = "report it: a LoRA left state behind after it was removed";
    report.add(if !same || after != before {
        Check::fail(format!("{name}: unload"), detail, fix)
    } else {
        Check::pass(format!("{name}: unload"), detail)
    })
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}
