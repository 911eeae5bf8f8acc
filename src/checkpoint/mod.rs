//! Reading SDXL checkpoints: single-file `.safetensors` (SGM/LDM layout) and diffusers folders.
//!
//! Opening a checkpoint reads headers only: it classifies the file, detects the architecture of
//! each component from tensor shapes, and matches every stored tensor against exact key tables
//! generated from that architecture, giving a [`LoadReport`]. Each component is then a
//! [`WeightSource`](crate::weights::WeightSource) the models load from, once per tensor, in the
//! file's dtype, by canonical (diffusers) names. This is the only place that knows foreign key
//! spellings (`lora/` reuses its tables); see `docs/ARCHITECTURE.md`.

mod detect;
mod error;
pub mod keys;
pub mod limits;
mod models;
mod report;
mod source;
mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use detect::{lora_evidence, Variant};
pub use error::CheckpointError;
pub use keys::Layout;
pub use models::{ComponentObserver, SdxlModels};
pub use report::{IgnoredTensor, LoadReport, MismatchedTensor, MissingTensor, TransformedTensor};
pub use source::HEAD_DIM_METADATA;
pub use synthetic::{fill_synthetic, manifest_header, SDXL_BASE_MANIFEST};

use keys::clip::ClipSpelling;
use keys::vae::VaeSpelling;
use keys::{Probe, Row};
use source::Source;

use crate::text_encoder::{ClipConfig, HiddenAct};
use crate::unet::UnetConfig;
use crate::vae::VaeConfig;
use crate::weights::{Dtype, Header, SafetensorsFile, TensorInfo, Transform};

/// SDXL's attention head width, a convention the shapes cannot show (`num_head_channels: 64`).
pub const SDXL_HEAD_DIM: usize = 64;

/// The four models of an SDXL checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Unet,
    TextEncoder,
    TextEncoder2,
    Vae,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Unet,
        Component::TextEncoder,
        Component::TextEncoder2,
        Component::Vae,
    ];

    /// The diffusers subfolder name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::TextEncoder => "text_encoder",
            Component::TextEncoder2 => "text_encoder_2",
            Component::Vae => "vae",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Component::Unet => "UNet",
            Component::TextEncoder => "CLIP-L text encoder",
            Component::TextEncoder2 => "OpenCLIP bigG text encoder",
            Component::Vae => "VAE",
        }
    }

    /// Key prefix in a single file.
    pub fn single_file_prefix(self) -> &'static str {
        match self {
            Component::Unet => "model.diffusion_model.",
            Component::TextEncoder => "conditioner.embedders.0.transformer.",
            Component::TextEncoder2 => "conditioner.embedders.1.model.",
            Component::Vae => "first_stage_model.",
        }
    }

    /// Weight files in a diffusers folder, preferred first.
    fn diffusers_files(self) -> &'static [&'static str] {
        match self {
            Component::Unet | Component::Vae => &[
                "diffusion_pytorch_model.fp16.safetensors",
                "diffusion_pytorch_model.safetensors",
            ],
            Component::TextEncoder | Component::TextEncoder2 => {
                &["model.fp16.safetensors", "model.safetensors"]
            }
        }
    }
}

/// The architecture of every component, as detected from the tensors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelConfig {
    pub unet: UnetConfig,
    pub text_encoder: ClipConfig,
    pub text_encoder_2: ClipConfig,
    pub vae: VaeConfig,
}

/// A canonical parameter matched to its stored tensor.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub file: usize,
    pub key: String,
    pub info: TensorInfo,
    pub transform: Transform,
    pub shape: Vec<usize>,
}

/// Parameter count and stored dtypes of one component.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentStats {
    pub component: Component,
    pub parameters: usize,
    /// Parameters per stored dtype.
    pub dtypes: BTreeMap<Dtype, usize>,
}

/// A stored float tensor holding NaN or infinite values.
#[derive(Clone, Debug, Serialize)]
pub struct NonFinite {
    pub key: String,
    pub nan: usize,
    pub inf: usize,
}

/// An opened checkpoint: classified, its architecture detected, every tensor accounted for.
pub struct Checkpoint {
    source: Source,
    pub variant: Variant,
    pub config: ModelConfig,
    report: LoadReport,
    /// Indexed by `Component as usize`: canonical name -> stored tensor.
    resolved: [BTreeMap<String, Resolved>; 4],
}

impl Checkpoint {
    /// Opens a single `.safetensors` file or a diffusers folder, reading headers only.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        Self::from_source(Source::open(path.as_ref())?)
    }

    /// A single file known only by its header: detection and key tables without weights.
    pub fn from_header(
        path: impl AsRef<Path>,
        header: Header,
    ) -> Result<Checkpoint, CheckpointError> {
        Self::from_source(Source::from_header(path.as_ref(), header))
    }

    /// A single file already opened (or held in memory: the synthetic checkpoint, the
    /// self-test's model).
    pub fn from_file(file: SafetensorsFile) -> Result<Checkpoint, CheckpointError> {
        Self::from_source(Source::single_file(file))
    }

    fn from_source(source: Source) -> Result<Checkpoint, CheckpointError> {
        let variant = match source.layout {
            Layout::SingleFile => {
                detect::classify_single_file(&source.path, &source.files[0].header().tensors)?
            }
            Layout::Diffusers => {
                let (unet, _) = source.component(Component::Unet).ok_or_else(|| {
                    CheckpointError::BadFolder {
                        path: source.path.clone(),
                        reason: "no unet/ weights".into(),
                    }
                })?;
                detect::classify_folder(
                    &source.path,
                    &source.class_name,
                    &unet.header().tensors,
                    source.component(Component::TextEncoder).is_some(),
                    &source.scheduler,
                )?
            }
        };
        let spellings = Spellings::of(&source)?;
        let config = detect_architecture(&source, spellings)?;
        let (report, resolved) = resolve(&source, &config, spellings);
        Ok(Checkpoint {
            source,
            variant,
            config,
            report,
            resolved,
        })
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    pub fn layout(&self) -> Layout {
        self.source.layout
    }

    /// The weight files read, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.source
            .files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect()
    }

    /// The single file's `__metadata__` (empty for folders).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        match self.source.layout {
            Layout::SingleFile => self.source.files[0].header().metadata.clone(),
            Layout::Diffusers => BTreeMap::new(),
        }
    }

    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// An error unless every tensor the architecture needs is present with the right shape.
    pub fn ensure_complete(&self) -> Result<(), CheckpointError> {
        let path = self.source.path.clone();
        if let Some(m) = self.report.missing.first() {
            return Err(CheckpointError::MissingTensors {
                path,
                count: self.report.missing.len(),
                first: format!("`{}` ({} `{}`)", m.key, m.component.name(), m.canonical),
            });
        }
        if let Some(m) = self.report.mismatched.first() {
            return Err(CheckpointError::ShapeMismatch {
                path,
                count: self.report.mismatched.len(),
                first: format!(
                    "`{}` is {} {:?}, expected {:?}",
                    m.key, m.dtype, m.found, m.expected
                ),
            });
        }
        Ok(())
    }

    pub fn stats(&self) -> Vec<ComponentStats> {
        Component::ALL
            .iter()
            .map(|&component| {
                let mut stats = ComponentStats {
                    component,
                    parameters: 0,
                    dtypes: BTreeMap::new(),
                };
                for r in self.resolved[component as usize].values() {
                    let n: usize = r.shape.iter().product();
                    stats.parameters += n;
                    *stats.dtypes.entry(r.info.dtype).or_default() += n;
                }
                stats
            })
            .collect()
    }

    /// Reads every stored float tensor and lists those with NaN or infinite values.
    pub fn scan_non_finite(&self) -> Vec<NonFinite> {
        let mut found = Vec::new();
        for file in &self.source.files {
            for (key, info) in &file.header().tensors {
                let Some(bytes) = file.bytes(info) else {
                    continue;
                };
                let (nan, inf) = info.dtype.count_non_finite(bytes);
                if nan + inf > 0 {
                    found.push(NonFinite {
                        key: key.clone(),
                        nan,
                        inf,
                    });
                }
            }
        }
        found
    }

    pub(crate) fn resolved(&self, component: Component) -> &BTreeMap<String, Resolved> {
        &self.resolved[component as usize]
    }

    pub(crate) fn file(&self, index: usize) -> &SafetensorsFile {
        &self.source.files[index]
    }
}

fn probe(source: &Source, component: Component) -> Result<Probe<'_>, CheckpointError> {
    let (file, prefix) =
        source
            .component(component)
            .ok_or_else(|| CheckpointError::Architecture {
                path: source.path.clone(),
                component: component.describe(),
                reason: format!("the folder has no {}/", component.name()),
            })?;
    Ok(Probe {
        prefix,
        tensors: &file.header().tensors,
    })
}

/// The spellings of the components whose keys differ by layout beyond the UNet's.
#[derive(Clone, Copy)]
struct Spellings {
    big_g: ClipSpelling,
    vae: VaeSpelling,
}

impl Spellings {
    fn of(source: &Source) -> Result<Spellings, CheckpointError> {
        Ok(Spellings {
            big_g: match source.layout {
                Layout::SingleFile => ClipSpelling::OpenClip,
                Layout::Diffusers => ClipSpelling::Transformers,
            },
            vae: VaeSpelling::of(&probe(source, Component::Vae)?, source.layout),
        })
    }
}

fn detect_architecture(
    source: &Source,
    spellings: Spellings,
) -> Result<ModelConfig, CheckpointError> {
    let fail = |component: Component| {
        move |reason: String| CheckpointError::Architecture {
            path: source.path.clone(),
            component: component.describe(),
            reason,
        }
    };
    let head_dim = source.hints.head_dim.unwrap_or(SDXL_HEAD_DIM);
    let failed = |(component, reason): limits::Failure| fail(component)(reason);
    limits::check_head_dim(head_dim).map_err(failed)?;
    let heads = |index: usize| {
        move |width: usize| source.hints.text_encoder_heads[index].unwrap_or(width / head_dim)
    };
    let act =
        |index: usize, default: HiddenAct| match source.hints.text_encoder_act[index].as_deref() {
            Some("quick_gelu") => HiddenAct::QuickGelu,
            Some("gelu") => HiddenAct::Gelu,
            _ => default,
        };
    let text_encoder = keys::clip::detect(
        &probe(source, Component::TextEncoder)?,
        ClipSpelling::Transformers,
        heads(0),
        act(0, HiddenAct::QuickGelu),
    )
    .map_err(fail(Component::TextEncoder))?;
    let text_encoder_2 = keys::clip::detect(
        &probe(source, Component::TextEncoder2)?,
        spellings.big_g,
        heads(1),
        act(1, HiddenAct::Gelu),
    )
    .map_err(fail(Component::TextEncoder2))?;
    let pooled = text_encoder_2.projection.ok_or_else(|| {
        fail(Component::TextEncoder2)("no text_projection (pooled output)".into())
    })?;

    let unet = keys::unet::detect(
        &probe(source, Component::Unet)?,
        source.layout,
        head_dim,
        pooled,
    )
    .map_err(fail(Component::Unet))?;
    let vae = keys::vae::detect(&probe(source, Component::Vae)?, spellings.vae)
        .map_err(fail(Component::Vae))?;

    let config = ModelConfig {
        unet,
        text_encoder,
        text_encoder_2,
        vae,
    };
    limits::check(&config, head_dim).map_err(failed)?;
    Ok(config)
}

/// The key table of every component in this checkpoint's spelling.
fn tables(source: &Source, config: &ModelConfig, spellings: Spellings) -> [Vec<Row>; 4] {
    [
        keys::unet::table(&config.unet, source.layout),
        keys::clip::table(&config.text_encoder, ClipSpelling::Transformers),
        keys::clip::table(&config.text_encoder_2, spellings.big_g),
        keys::vae::table(&config.vae, spellings.vae),
    ]
}

/// Matches every table row to a stored tensor and accounts for every stored tensor.
fn resolve(
    source: &Source,
    config: &ModelConfig,
    spellings: Spellings,
) -> (LoadReport, [BTreeMap<String, Resolved>; 4]) {
    let mut report = LoadReport::default();
    let mut resolved: [BTreeMap<String, Resolved>; 4] = Default::default();
    let mut used: BTreeSet<(usize, String)> = BTreeSet::new();

    for (component, rows) in Component::ALL
        .into_iter()
        .zip(tables(source, config, spellings))
    {
        let Some(c) = source.components[component as usize] else {
            continue;
        };
        let header = source.files[c.file].header();
        for row in rows {
            let key = format!("{}{}", c.prefix, row.key);
            let Some(info) = header.tensors.get(&key) else {
                report.missing.push(MissingTensor {
                    component,
                    canonical: row.canonical,
                    key,
                });
                continue;
            };
            used.insert((c.file, key.clone()));
            let expected = row.transform.source_shape(&row.shape);
            if info.shape != expected || !info.dtype.is_float() {
                report.mismatched.push(MismatchedTensor {
                    component,
                    key,
                    canonical: row.canonical,
                    expected,
                    found: info.shape.clone(),
                    dtype: info.dtype.name().to_string(),
                });
                continue;
            }
            report.applied += 1;
            if row.transform != Transform::None {
                report.transformed.push(TransformedTensor {
                    key: key.clone(),
                    canonical: row.canonical.clone(),
                    transform: row.transform,
                });
            }
            resolved[component as usize].insert(
                row.canonical,
                Resolved {
                    file: c.file,
                    key,
                    info: info.clone(),
                    transform: row.transform,
                    shape: row.shape,
                },
            );
        }
    }

    for (index, file) in source.files.iter().enumerate() {
        for key in file.header().tensors.keys() {
            if used.contains(&(index, key.clone())) {
                continue;
            }
            match keys::ignore::reason(key) {
                Some(reason) => report.ignored.push(IgnoredTensor {
                    key: key.clone(),
                    reason,
                }),
                None => report.unused.push(match source.layout {
                    Layout::SingleFile => key.clone(),
                    Layout::Diffusers => format!("{}: {key}", file.path().display()),
                }),
            }
        }
    }
    (report, resolved)
}
