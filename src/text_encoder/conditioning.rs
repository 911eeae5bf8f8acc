//! SDXL's text conditioning from a positive and a negative prompt, as diffusers'
//! `StableDiffusionXLPipeline.encode_prompt` computes it
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py>),
//! extended with A1111's chunking and weights:
//!
//! - context = concat(CLIP-L hidden state, bigG hidden state) at the penultimate layer (minus
//!   `clip_skip` more), `[B, 77 * chunks, 768 + 1280]`; CLIP-L's last layer never runs;
//! - pooled = bigG `text_projection(final_layer_norm(last)[first end token])` of the first chunk;
//! - weighted tokens are scaled and each chunk's mean restored, per encoder (A1111's
//!   `FrozenCLIPEmbedderWithCustomWordsBase.process_tokens`);
//! - an empty negative prompt gives all-zero context and pooled (`force_zeros_for_empty_prompt`);
//! - both prompts are padded with empty chunks to the same chunk count and encoded in one batch.

use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use super::limits::{check_chunks, check_weights};
use super::{ClipTextModel, TextError};
use crate::nn::Adapt;
use crate::tokenizer::{chunk_prompt, Chunk, ClipTokenizer, Flavor, ParsedPrompt, EOS};

/// Options of the encoding that are not in the prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// Layers skipped beyond the penultimate one, diffusers' `clip_skip` (0 = SDXL's default).
    /// Applied to the negative prompt too (diffusers applies it to the positive only).
    pub clip_skip: usize,
}

/// The conditioning of one prompt pair, f32, batch order `[negative, positive]` (CFG's
/// `[uncond, cond]`).
#[derive(Clone, Debug)]
pub struct Conditioning {
    /// `[2, 77 * chunks, 2048]`
    pub context: Tensor<3>,
    /// `[2, 1280]`
    pub pooled: Tensor<2>,
    /// 75-token chunks per prompt.
    pub chunks: usize,
}

/// SDXL's two text encoders, as loaded from a checkpoint.
#[derive(burn::module::Module, Debug)]
pub struct TextEncoders {
    /// CLIP ViT-L/14 (768 wide).
    pub text_encoder: ClipTextModel,
    /// OpenCLIP ViT-bigG/14 with its projection (1280 wide).
    pub text_encoder_2: ClipTextModel,
}

/// The LoRA deltas each encoder's forward pass consults (both: none, by default).
#[derive(Clone, Copy, Debug, Default)]
pub struct TextAdapters<'a> {
    pub text_encoder: Adapt<'a>,
    pub text_encoder_2: Adapt<'a>,
}

/// The prompts of one encoding, each cut into the same number of chunks per flavor.
struct Batch {
    /// Prompts encoded: `[negative, positive]`, or `[positive]` for an empty negative.
    prompts: usize,
    /// Chunks per prompt.
    chunks: usize,
    /// Per flavor (`Flavor::BOTH` order), prompt-major rows: prompt 0's chunks, then prompt 1's.
    rows: [Vec<Chunk>; 2],
}

impl Batch {
    fn of(prompts: &[&ParsedPrompt]) -> Batch {
        let tokenizer = ClipTokenizer::shared();
        let mut chunks: Vec<[Vec<Chunk>; 2]> = prompts
            .iter()
            .map(|p| Flavor::BOTH.map(|f| chunk_prompt(tokenizer, p, f)))
            .collect();
        let count = chunks.iter().flatten().map(Vec::len).max().unwrap_or(1);
        for list in chunks.iter_mut().flatten() {
            list.resize(count, Chunk::default());
        }
        let rows = [0, 1].map(|flavor| {
            chunks
                .iter()
                .flat_map(|per_flavor| per_flavor[flavor].iter().cloned())
                .collect()
        });
        Batch {
            prompts: prompts.len(),
            chunks: count,
            rows,
        }
    }
}

impl TextEncoders {
    /// Encodes `negative` and `positive` in one batch.
    pub fn encode(
        &self,
        positive: &ParsedPrompt,
        negative: &ParsedPrompt,
        options: TextOptions,
    ) -> Result<Conditioning, TextError> {
        self.encode_with(positive, negative, options, TextAdapters::default())
    }

    /// [`TextEncoders::encode`] with each encoder's LoRA deltas (applied to both prompts, as
    /// diffusers does).
    pub fn encode_with(
        &self,
        positive: &ParsedPrompt,
        negative: &ParsedPrompt,
        options: TextOptions,
        adapters: TextAdapters,
    ) -> Result<Conditioning, TextError> {
        self.check(options)?;
        for prompt in [positive, negative] {
            check_weights(prompt)?;
        }
        // Prompts to encode: the negative only when it has text.
        let zero_negative = negative.is_empty();
        let prompts: Vec<&ParsedPrompt> = if zero_negative {
            vec![positive]
        } else {
            vec![negative, positive]
        };
        let batch = Batch::of(&prompts);
        check_chunks("prompt", batch.chunks)?;
        let (context, pooled) = self.run(&batch, options.clip_skip, adapters);
        let (context, pooled) = if zero_negative {
            (
                Tensor::cat(vec![context.zeros_like(), context], 0),
                Tensor::cat(vec![pooled.zeros_like(), pooled], 0),
            )
        } else {
            (context, pooled)
        };
        Ok(Conditioning {
            context,
            pooled,
            chunks: batch.chunks,
        })
    }

    /// Refuses a `clip_skip` past the encoders' depth and a bigG without its projection.
    fn check(&self, options: TextOptions) -> Result<(), TextError> {
        let (clip_l, big_g) = (&self.text_encoder, &self.text_encoder_2);
        let layers = clip_l.layers.len().min(big_g.layers.len());
        let max = layers.saturating_sub(1);
        if options.clip_skip > max {
            return Err(TextError::ClipSkip {
                requested: options.clip_skip,
                layers,
                max,
            });
        }
        if big_g.text_projection.is_none() {
            return Err(TextError::NoProjection);
        }
        Ok(())
    }

    /// Both encoders on every row of `batch`: the context `[prompts, 77 * chunks, 2048]` and
    /// the pooled embedding of each prompt's first chunk `[prompts, 1280]`, f32.
    fn run(&self, batch: &Batch, skip: usize, adapters: TextAdapters) -> (Tensor<3>, Tensor<2>) {
        let (clip_l, big_g) = (&self.text_encoder, &self.text_encoder_2);
        let device = clip_l.token_embedding.weight.val().device();
        let [rows_l, rows_g] = &batch.rows;
        let ids_l = ids_tensor(rows_l, Flavor::ClipL, &device);
        let z_l = clip_l
            .hidden_states(ids_l, clip_l.layers.len() - 1 - skip, adapters.text_encoder)
            .pop()
            .expect("hidden states"); // [rows, 77, 768]
        let ids_g = ids_tensor(rows_g, Flavor::BigG, &device);
        let mut states_g = big_g.hidden_states(ids_g, big_g.layers.len(), adapters.text_encoder_2);
        let last_g = states_g.pop().expect("last hidden state"); // [rows, 77, 1280]
        let z_g = states_g.swap_remove(big_g.layers.len() - 1 - skip); // [rows, 77, 1280]

        let f32 = FloatDType::F32;
        let z_l = apply_weights(z_l.cast(f32), rows_l, &device);
        let z_g = apply_weights(z_g.cast(f32), rows_g, &device);
        let per_prompt = |z: Tensor<3>| {
            let [_, seq, width] = z.dims();
            z.reshape([batch.prompts, batch.chunks * seq, width]) // [prompts, chunks * 77, C]
        };
        let context = Tensor::cat(vec![per_prompt(z_l), per_prompt(z_g)], 2); // [prompts, 77k, 2048]

        let eos: Vec<usize> = rows_g
            .iter()
            .map(|c| first_eos(&c.ids(Flavor::BigG)))
            .collect();
        let pooled = big_g.pooled(last_g, &eos).cast(f32); // [rows, 1280]
        let first_chunks: Vec<i64> = (0..batch.prompts)
            .map(|p| (p * batch.chunks) as i64)
            .collect();
        let first_chunks =
            Tensor::<1, Int>::from_data(TensorData::new(first_chunks, [batch.prompts]), &device);
        (context, pooled.select(0, first_chunks)) // pooled [prompts, 1280]
    }
}

/// `[rows, 77]` ids.
fn ids_tensor(rows: &[Chunk], flavor: Flavor, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|c| c.ids(flavor))
        .map(i64::from)
        .collect();
    let len = ids.len() / rows.len();
    Tensor::from_data(TensorData::new(ids, [rows.len(), len]), device)
}

/// Where the pooled embedding is read: the first end token (transformers'
/// `(input_ids == eos_token_id).argmax(-1)`).
fn first_eos(ids: &[u32]) -> usize {
    ids.iter()
        .position(|&id| id == EOS)
        .unwrap_or(ids.len() - 1)
}

/// A1111's weighting: each token's hidden state times its weight, then the chunk rescaled so
/// its mean over tokens and channels is what it was. Rows without weights are left untouched.
fn apply_weights(z: Tensor<3>, rows: &[Chunk], device: &Device) -> Tensor<3> {
    if !rows.iter().any(|c| c.is_weighted()) {
        return z;
    }
    let [n, seq, _] = z.dims();
    let weights: Vec<f32> = rows.iter().flat_map(|c| c.multipliers()).collect();
    let weights = Tensor::<3>::from_data(TensorData::new(weights, [n, seq, 1]), device); // [rows, 77, 1]
    let mean = |t: Tensor<3>| t.mean_dim(2).mean_dim(1); // [rows, 1, 1]
    let original = mean(z.clone());
    let weighted = z * weights;
    let now = mean(weighted.clone());
    // A chunk whose weighted mean is exactly 0 (every weight 0) keeps its scale.
    let ratio = (original / now.clone()).mask_fill(now.equal_elem(0.0), 1.0);
    weighted * ratio
}
