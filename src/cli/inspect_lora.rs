//! `sdxl-wgpu inspect LORA.safetensors [--model CKPT]`: what a LoRA file is (format, rank and
//! alpha per module group, dtypes, training metadata) and, with a model, whether every module
//! finds its layer with the right shapes — the verdict a user needs before generating.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::say;
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::lora::{AdapterSet, FileReport, LoraFile, LoraFormat, LoraSpec, LoraTable};

/// Module groups by the name prefixes of both formats.
const GROUPS: [(&str, &str); 7] = [
    ("lora_unet_", "UNet"),
    ("lora_te1_", "CLIP-L"),
    ("lora_te2_", "bigG"),
    ("lora_te_", "text encoder (SD 1.x/2.x naming)"),
    ("unet.", "UNet"),
    ("text_encoder_2.", "bigG"),
    ("text_encoder.", "CLIP-L"),
];

/// The group a module name belongs to, by [`GROUPS`].
fn group_of(module: &str) -> &'static str {
    GROUPS
        .iter()
        .find(|(prefix, _)| module.starts_with(prefix))
        .map_or("other", |(_, g)| g)
}

#[derive(Serialize, Default)]
struct Group {
    modules: usize,
    conv_modules: usize,
    /// Modules that match no layer of the model (known only with `--model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    unmatched: Option<usize>,
    ranks: BTreeSet<usize>,
    alphas: BTreeSet<String>,
    dtypes: BTreeSet<String>,
}

#[derive(Serialize)]
struct LoraInspection {
    path: PathBuf,
    formats: Vec<LoraFormat>,
    modules: usize,
    groups: BTreeMap<String, Group>,
    unrecognised: Vec<String>,
    metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compatibility: Option<Compatibility>,
}

#[derive(Serialize)]
struct Compatibility {
    model: PathBuf,
    compatible: bool,
    verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<FileReport>,
}

/// True when `path` is a single file whose tensors are LoRA tensors.
pub fn is_lora(path: &Path) -> bool {
    path.is_file() && LoraFile::open(path).is_ok_and(|f| !f.modules.is_empty())
}

pub fn run(path: &Path, model: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let file = LoraFile::open(path)?;
    let mut groups = groups(&file);
    let compatibility = match model {
        None => None,
        Some(model) => Some(compatibility(path, model, &mut groups)?),
    };
    let inspection = LoraInspection {
        path: path.to_path_buf(),
        formats: file.formats(),
        modules: file.modules.len(),
        groups,
        unrecognised: file.unrecognised.clone(),
        metadata: file
            .metadata
            .iter()
            .filter(|(k, _)| {
                k.starts_with("ss_base_model")
                    || k.starts_with("modelspec.")
                    || matches!(
                        k.as_str(),
                        "ss_network_dim"
                            | "ss_network_alpha"
                            | "ss_network_module"
                            | "ss_output_name"
                    )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        compatibility,
    };
    if json {
        say!("{}", serde_json::to_string_pretty(&inspection)?)?;
    } else {
        print_text(&inspection)?;
    }
    match &inspection.compatibility {
        Some(c) if !c.compatible => anyhow::bail!("{}", c.verdict),
        _ => Ok(()),
    }
}

/// The file's modules by group: counts, ranks, alphas, dtypes.
fn groups(file: &LoraFile) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for module in &file.modules {
        let g = groups
            .entry(group_of(&module.name).to_string())
            .or_default();
        g.modules += 1;
        g.conv_modules += usize::from(module.down.shape.len() == 4 && module.down.shape[2] > 1);
        g.ranks.insert(module.rank());
        g.dtypes.insert(module.down.dtype.name().to_string());
        let alpha = match &module.alpha {
            Some(t) => file
                .values(t)
                .ok()
                .and_then(|v| v.first().map(|a| a.to_string()))
                .unwrap_or_else(|| "unreadable".into()),
            None => "none (= rank)".into(),
        };
        g.alphas.insert(alpha);
    }
    groups
}

/// The verdict on the LoRA at `path` with the checkpoint at `model`, counting the modules that
/// match no layer into `groups`.
fn compatibility(
    path: &Path,
    model: &Path,
    groups: &mut BTreeMap<String, Group>,
) -> anyhow::Result<Compatibility> {
    let checkpoint = Checkpoint::open(model)?;
    let table = LoraTable::new(&checkpoint.config);
    let spec = LoraSpec {
        path: path.to_path_buf(),
        unet_weight: 1.0,
        text_encoder_weight: 1.0,
    };
    Ok(match AdapterSet::check(&spec, &table) {
        Ok(report) => {
            let unmatched = unmatched_per_group(&report);
            for g in groups.values_mut() {
                g.unmatched = Some(0);
            }
            for (&name, &n) in &unmatched {
                groups.entry(name.to_string()).or_default().unmatched = Some(n);
            }
            Compatibility {
                model: model.to_path_buf(),
                compatible: true,
                verdict: verdict(&report, &unmatched),
                report: Some(report),
            }
        }
        Err(e) => Compatibility {
            model: model.to_path_buf(),
            compatible: false,
            verdict: format!("incompatible: {e}"),
            report: None,
        },
    })
}

/// How many of the report's unmatched modules each group has.
fn unmatched_per_group(report: &FileReport) -> BTreeMap<&'static str, usize> {
    let mut per_group = BTreeMap::new();
    for name in &report.unmatched {
        *per_group.entry(group_of(name)).or_default() += 1;
    }
    per_group
}

fn verdict(report: &FileReport, unmatched: &BTreeMap<&str, usize>) -> String {
    let adapted: Vec<String> = report
        .matched
        .iter()
        .map(|(c, n)| format!("{n} {} layers", c.describe()))
        .collect();
    let mut text = format!("compatible: adapts {}", adapted.join(", "));
    if !report.unmatched.is_empty() {
        let per_group: Vec<String> = unmatched.iter().map(|(g, n)| format!("{g} {n}")).collect();
        text.push_str(&format!(
            "; modules that match no layer are ignored: {} ({}; e.g. `{}`)",
            report.unmatched.len(),
            per_group.join(", "),
            report.unmatched[0]
        ));
    }
    text
}

fn print_text(i: &LoraInspection) -> std::io::Result<()> {
    say!("LoRA: {}", i.path.display())?;
    let formats: Vec<String> = i.formats.iter().map(|f| format!("{f:?}")).collect();
    say!("format: {} ({} modules)", formats.join(", "), i.modules)?;
    for (name, g) in &i.groups {
        let unmatched = g
            .unmatched
            .map_or(String::new(), |n| format!(", {n} match no layer"));
        say!(
            "  {name:<10} {:>4} modules ({} conv{unmatched}), rank {:?}, alpha {:?}, {:?}",
            g.modules,
            g.conv_modules,
            g.ranks,
            g.alphas,
            g.dtypes
        )?;
    }
    if !i.unrecognised.is_empty() {
        say!(
            "unrecognised tensors (not applied): {} (e.g. `{}`)",
            i.unrecognised.len(),
            i.unrecognised[0]
        )?;
    }
    for (k, v) in &i.metadata {
        say!("{k}: {v}")?;
    }
    if let Some(c) = &i.compatibility {
        say!("with {}: {}", c.model.display(), c.verdict)?;
    }
    Ok(())
}
