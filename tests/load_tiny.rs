//! The tiny reference model loads onto the device from the single file and from the diffusers
//! folder, and every uploaded tensor equals the diffusers tensor exactly (the folder was written
//! by diffusers; the single file by our converter, itself checked by diffusers' loader). Runs on
//! whatever adapter `--backend auto` picks: lavapipe in CI.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use burn::tensor::{DType, Tensor};
use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;
use sdxl_wgpu::checkpoint::{Checkpoint, Component};
use sdxl_wgpu::device;
use sdxl_wgpu::vae::AutoencoderKl;
use sdxl_wgpu::weights::{
    self, SafetensorsFile, StoredParam, Transform, WeightDtype, WeightSource,
};

mod common;
use common::{gpu, values, TINY, TINY_FOLDER};

/// The tests of this file share one device; the one that compares its memory in use before and
/// after takes this exclusively, every other test shares it, so no upload of a neighbour lands
/// between its two readings.
static DEVICE_MEMORY: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    DEVICE_MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    DEVICE_MEMORY.write().unwrap_or_else(|e| e.into_inner())
}

/// The diffusers folder's f16 tensors of one component: name -> values as f32.
fn reference(component: Component) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let file = match component {
        Component::Unet | Component::Vae => "diffusion_pytorch_model.fp16.safetensors",
        _ => "model.fp16.safetensors",
    };
    let bytes =
        std::fs::read(Path::new(TINY_FOLDER).join(component.name()).join(file)).expect("fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parses");
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), StDtype::F16);
            let values = t
                .data()
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            (name, (t.shape().to_vec(), values))
        })
        .collect()
}

/// Loads every component, keeping each uploaded tensor: component -> (name, shape, tensor).
fn load(
    ckpt: &Checkpoint,
    dtype: WeightDtype,
) -> BTreeMap<Component, Vec<(String, Vec<usize>, Tensor<1>)>> {
    let mut uploaded: BTreeMap<Component, Vec<_>> = BTreeMap::new();
    ckpt.load_observed(gpu(), dtype, &mut |component, name, shape, tensor| {
        uploaded
            .entry(component)
            .or_default()
            .push((name.to_string(), shape.to_vec(), tensor));
    })
    .expect("loads");
    uploaded
}

/// The dtype a tensor is uploaded in when the model's weights go up in `want`: the VAE in f32
/// (its default compute dtype) and the norm layers' scales and shifts in f32 (what the norm
/// kernels read), everything else in `want`.
fn uploaded_dtype(component: Component, name: &str, want: DType) -> DType {
    // `…resnets.0.norm1.weight`, `…layer_norm1.bias`, `conv_norm_out.weight`: the module's own
    // name is the second-to-last segment.
    let module = name.rsplit('.').nth(1).unwrap_or_default();
    if component == Component::Vae || module.contains("norm") {
        DType::F32
    } else {
        want
    }
}

/// Every uploaded tensor of every component equals `expected(reference value, its dtype)`
/// exactly, in the dtype [`uploaded_dtype`] gives it, and every reference tensor was uploaded.
fn assert_loaded_equal(
    ckpt: &Checkpoint,
    dtype: WeightDtype,
    want: DType,
    expected: impl Fn(f32, DType) -> f32,
) {
    let mut loaded = load(ckpt, dtype);
    for component in Component::ALL {
        let reference = reference(component);
        let uploaded = loaded.remove(&component).unwrap_or_default();
        assert_eq!(
            uploaded.len(),
            reference.len(),
            "{component:?}: tensor count"
        );
        for (name, shape, tensor) in uploaded {
            let (ref_shape, ref_values) = reference
                .get(&name)
                .unwrap_or_else(|| panic!("{component:?}: `{name}` is not a diffusers tensor"));
            // diffusers keeps the VAE attention as [C, C] linears, so shapes agree directly.
            assert_eq!(&shape, ref_shape, "{component:?} {name}: shape");
            let data = tensor.into_data();
            let dtype = uploaded_dtype(component, &name, want);
            assert_eq!(data.dtype(), dtype, "{component:?} {name}: dtype");
            let got: Vec<f32> = data.convert::<f32>().try_to_vec::<f32>().expect("f32");
            let want_values: Vec<f32> = ref_values.iter().map(|v| expected(*v, dtype)).collect();
            assert!(
                got.iter()
                    .zip(&want_values)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{component:?} {name}: values differ"
            );
        }
    }
}

#[test]
fn single_file_loads_equal_to_diffusers() {
    let _memory = shared();
    let ckpt = Checkpoint::open(TINY).expect("opens");
    assert!(ckpt.report().is_clean());
    assert_loaded_equal(&ckpt, WeightDtype::AsStored, DType::F16, |v, _| v);
}

#[test]
fn diffusers_folder_loads_equal_to_diffusers() {
    let _memory = shared();
    let ckpt = Checkpoint::open(TINY_FOLDER).expect("opens");
    assert!(ckpt.report().is_clean());
    assert_eq!(ckpt.config, Checkpoint::open(TINY).expect("opens").config);
    assert_loaded_equal(&ckpt, WeightDtype::AsStored, DType::F16, |v, _| v);
}

#[test]
fn weights_can_be_widened_to_f32() {
    let _memory = shared();
    let ckpt = Checkpoint::open(TINY).expect("opens");
    assert_loaded_equal(&ckpt, WeightDtype::F32, DType::F32, |v, _| v);
}

/// Rewrites the tiny single file with every f16 tensor converted by `to`.
fn converted(dir: &Path, dtype: StDtype, to: impl Fn(f16) -> Vec<u8>) -> std::path::PathBuf {
    let bytes = std::fs::read(TINY).expect("tiny");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parses");
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let out = t
                .data()
                .chunks_exact(2)
                .flat_map(|b| to(f16::from_le_bytes([b[0], b[1]])))
                .collect();
            (n, t.shape().to_vec(), out)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(dtype, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let path = dir.join("converted.safetensors");
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).expect("metadata");
    safetensors::serialize_to_file(views, metadata.metadata().clone(), &path).expect("write");
    path
}

#[test]
fn bf16_file_loads_as_f16() {
    let _memory = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = converted(dir.path(), StDtype::BF16, |v| {
        bf16::from_f32(v.to_f32()).to_le_bytes().to_vec()
    });
    let ckpt = Checkpoint::open(&path).expect("opens");
    assert_loaded_equal(&ckpt, WeightDtype::AsStored, DType::F16, |v, dtype| {
        let stored = bf16::from_f32(v).to_f32();
        match dtype {
            DType::F16 => f16::from_f32(stored).to_f32(),
            _ => stored,
        }
    });
}

#[test]
fn fp8_file_loads_as_f16() {
    let _memory = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    // float8_e5m2 is the high byte of an f16.
    let path = converted(dir.path(), StDtype::F8_E5M2, |v| {
        vec![(v.to_bits() >> 8) as u8]
    });
    let ckpt = Checkpoint::open(&path).expect("opens");
    // An e5m2 value is exact in f16 and in f32 alike.
    assert_loaded_equal(&ckpt, WeightDtype::AsStored, DType::F16, |v, _| {
        f16::from_bits(f16::from_f32(v).to_bits() & 0xff00).to_f32()
    });
}

#[test]
fn f32_file_loads_as_f32() {
    let _memory = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = converted(dir.path(), StDtype::F32, |v| {
        v.to_f32().to_le_bytes().to_vec()
    });
    let ckpt = Checkpoint::open(&path).expect("opens");
    assert_loaded_equal(&ckpt, WeightDtype::AsStored, DType::F32, |v, _| v);
}

#[test]
fn module_tree_follows_the_detected_architecture() {
    let _memory = shared();
    let ckpt = Checkpoint::open(TINY).expect("opens");
    let models = ckpt.load(gpu(), WeightDtype::AsStored).expect("loads");
    let unet = &models.unet;
    assert_eq!(unet.down_blocks.len(), 3);
    assert!(unet.down_blocks[0].attentions.is_empty());
    assert_eq!(
        unet.down_blocks[2].attentions[0].transformer_blocks.len(),
        2
    );
    assert!(unet.down_blocks[2].downsampler.is_none());
    assert_eq!(
        unet.mid_block.attention.transformer_blocks[0].attn1.heads,
        8
    );
    assert_eq!(unet.up_blocks[0].resnets.len(), 3);
    assert_eq!(
        unet.up_blocks[0].attentions[0].transformer_blocks[0]
            .attn2
            .to_k
            .in_features(),
        48
    );
    assert!(unet.up_blocks[2].upsampler.is_none());
    let big_g = &models.text_encoders.text_encoder_2;
    assert_eq!(big_g.layers[0].self_attn.heads, 4);
    assert_eq!(
        big_g.text_projection.as_ref().map(|p| p.out_features()),
        Some(24)
    );
    let vae = &models.vae;
    assert_eq!(vae.decoder.up_blocks.len(), 4);
    assert_eq!(vae.decoder.up_blocks[0].resnets.len(), 3);
}

/// A tensor larger than the adapter's largest buffer is refused before anything is uploaded,
/// naming the tensor and the way out.
#[test]
fn tensor_over_the_buffer_limit_is_refused_up_front() {
    let _memory = exclusive();
    let mut small = gpu().clone();
    small.adapter.max_buffer_size = 4 << 20; // 4 MiB: the f32 token embeddings (6 MiB) exceed it
    let ckpt = Checkpoint::open(TINY).expect("fixture");
    let before = device::memory_in_use(&small.device).map(|(used, _)| used);
    let err = ckpt
        .load_text_encoders(&small, WeightDtype::F32)
        .expect_err("over the limit");
    let msg = err.to_string();
    assert!(
        msg.contains("token_embedding.weight` needs 6 MiB as f32"),
        "{msg}"
    );
    assert!(msg.contains("more than the 4 MiB one buffer"), "{msg}");
    assert_eq!(
        device::memory_in_use(&small.device).map(|(used, _)| used),
        before
    );
    // f16 halves it to 3 MiB, which fits.
    assert!(ckpt.load_text_encoders(&small, WeightDtype::F16).is_ok());
}

/// A weight source that is not a checkpoint: one safetensors file whose keys already are the
/// canonical names (a diffusers component file, or a separate VAE file in that spelling).
struct CanonicalFile {
    file: SafetensorsFile,
}

impl WeightSource for CanonicalFile {
    fn model_name(&self) -> &str {
        "vae"
    }

    fn describe(&self) -> String {
        self.file.path().display().to_string()
    }

    fn names(&self) -> Vec<&str> {
        self.file
            .header()
            .tensors
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn get(&self, name: &str) -> Option<StoredParam<'_>> {
        let (key, info) = self.file.header().tensors.get_key_value(name)?;
        Some(StoredParam {
            file: &self.file,
            key,
            info,
            transform: Transform::None,
            shape: &info.shape,
        })
    }
}

/// The models are built from the weight-source interface, not from a checkpoint: the VAE builds
/// straight from the diffusers folder's VAE file, taking every tensor, each equal to what the
/// checkpoint's VAE loads.
#[test]
fn a_model_builds_from_any_weight_source() {
    let _memory = shared();
    let path = Path::new(TINY_FOLDER).join("vae/diffusion_pytorch_model.fp16.safetensors");
    let source = CanonicalFile {
        file: SafetensorsFile::open(&path).expect("the VAE file"),
    };
    let checkpoint = Checkpoint::open(TINY_FOLDER).expect("fixture");
    let cfg = &checkpoint.config.vae;
    let mut uploaded = BTreeMap::new();
    let mut observe = |name: &str, _: &[usize], t: Tensor<1>| {
        uploaded.insert(name.to_string(), values(t));
    };
    weights::build(&source, gpu(), WeightDtype::F32, &mut observe, |w| {
        AutoencoderKl::load(cfg, w)
    })
    .expect("builds without a checkpoint");
    let from_checkpoint = load(&checkpoint, WeightDtype::F32)
        .remove(&Component::Vae)
        .expect("the checkpoint's VAE");
    assert_eq!(uploaded.len(), from_checkpoint.len());
    for (name, _, tensor) in from_checkpoint {
        assert_eq!(uploaded.get(&name), Some(&values(tensor)), "{name}");
    }
}
