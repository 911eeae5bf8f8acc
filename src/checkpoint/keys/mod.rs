//! Exact key tables between our canonical parameter names (diffusers' / transformers' module
//! paths) and each foreign spelling, generated from the detected architecture by loops, plus the
//! shape probes that detect that architecture in each spelling. One file per model; this one
//! holds what they share: the row type, its transforms and the row emitters.

pub mod clip;
pub mod ignore;
pub mod unet;
pub mod vae;

use std::collections::BTreeMap;

use crate::weights::{TensorInfo, Transform};

/// One canonical parameter: its name and shape, and where the foreign spelling stores it
/// (`key`, relative to the component's prefix in a single file).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub canonical: String,
    pub shape: Vec<usize>,
    pub key: String,
    pub transform: Transform,
}

/// Which spelling a component's keys use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    /// The original SGM/LDM single-file layout (`model.diffusion_model.input_blocks...`).
    SingleFile,
    /// A diffusers folder (`unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`).
    Diffusers,
}

/// Shape lookups over one component's stored tensors, for architecture detection.
pub struct Probe<'a> {
    pub prefix: &'a str,
    pub tensors: &'a BTreeMap<String, TensorInfo>,
}

impl Probe<'_> {
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors
            .get(&format!("{}{key}", self.prefix))
            .map(|t| t.shape.as_slice())
    }

    pub fn has(&self, key: &str) -> bool {
        self.shape(key).is_some()
    }

    /// How many consecutive indices from 0 have a tensor named `key(i)`.
    pub fn count(&self, key: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&key(i))).count()
    }

    /// Dimension `dim` of `key`, or a message saying which tensor is missing or too small.
    pub fn dim(&self, key: &str, dim: usize) -> Result<usize, String> {
        let shape = self
            .shape(key)
            .ok_or_else(|| format!("tensor `{}{key}` is missing", self.prefix))?;
        shape.get(dim).copied().ok_or_else(|| {
            format!(
                "tensor `{}{key}` has shape {shape:?}, expected rank > {dim}",
                self.prefix
            )
        })
    }
}

/// Collects rows for a table.
#[derive(Default)]
pub struct Rows(pub Vec<Row>);

impl Rows {
    pub fn param(
        &mut self,
        canonical: String,
        key: String,
        shape: Vec<usize>,
        transform: Transform,
    ) {
        self.0.push(Row {
            canonical,
            shape,
            key,
            transform,
        });
    }

    /// `{c}.weight [out, in]` (and `{c}.bias [out]`) stored at `{f}.weight` / `{f}.bias`.
    pub fn linear(&mut self, c: &str, f: &str, out: usize, inp: usize, bias: bool) {
        self.param(
            format!("{c}.weight"),
            format!("{f}.weight"),
            vec![out, inp],
            Transform::None,
        );
        if bias {
            self.bias(c, f, out);
        }
    }

    /// A convolution `[out, in, k, k]` with bias.
    pub fn conv(&mut self, c: &str, f: &str, out: usize, inp: usize, k: usize) {
        let shape = vec![out, inp, k, k];
        self.param(
            format!("{c}.weight"),
            format!("{f}.weight"),
            shape,
            Transform::None,
        );
        self.bias(c, f, out);
    }

    /// A norm's `weight` and `bias`, both `[channels]`.
    pub fn norm(&mut self, c: &str, f: &str, channels: usize) {
        self.param(
            format!("{c}.weight"),
            format!("{f}.weight"),
            vec![channels],
            Transform::None,
        );
        self.bias(c, f, channels);
    }

    fn bias(&mut self, c: &str, f: &str, out: usize) {
        self.param(
            format!("{c}.bias"),
            format!("{f}.bias"),
            vec![out],
            Transform::None,
        );
    }

    /// A resnet block `cin -> cout` (with a timestep projection from `temb` wide, in the UNet).
    /// `leaf` maps diffusers' leaf names to the foreign ones.
    #[allow(clippy::too_many_arguments)]
    pub fn resnet(
        &mut self,
        c: &str,
        f: &str,
        leaf: &dyn Fn(&'static str) -> &'static str,
        cin: usize,
        cout: usize,
        temb: Option<usize>,
    ) {
        let at = |name: &'static str| (format!("{c}.{name}"), format!("{f}.{}", leaf(name)));
        let (cn, fnm) = at("norm1");
        self.norm(&cn, &fnm, cin);
        let (cn, fnm) = at("conv1");
        self.conv(&cn, &fnm, cout, cin, 3);
        if let Some(temb) = temb {
            let (cn, fnm) = at("time_emb_proj");
            self.linear(&cn, &fnm, cout, temb, true);
        }
        let (cn, fnm) = at("norm2");
        self.norm(&cn, &fnm, cout);
        let (cn, fnm) = at("conv2");
        self.conv(&cn, &fnm, cout, cout, 3);
        if cin != cout {
            let (cn, fnm) = at("conv_shortcut");
            self.conv(&cn, &fnm, cout, cin, 1);
        }
    }
}

/// Looks `name` up in a `(canonical, foreign)` table; names not in it are spelled the same.
pub fn spelled(table: &'static [(&'static str, &'static str)], name: &'static str) -> &'static str {
    table
        .iter()
        .find(|(c, _)| *c == name)
        .map_or(name, |(_, f)| f)
}
