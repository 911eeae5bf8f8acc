//! Tiled VAE decode and encode: the latents (or the image) cut into overlapping tiles
//! (`plan.rs` decides whether and how), each tile run on its own, the results blended on the
//! host (`blend.rs`). diffusers does the same with fixed 512-pixel tiles and a 25% overlap
//! (<https://github.com/huggingface/diffusers/blob/v0.35.2/src/diffusers/models/autoencoders/autoencoder_kl.py>).

use burn::tensor::{FloatDType, Tensor};

use super::blend::Canvas;
use super::plan::{plan, spans};
use super::{
    decode_peak_bytes, encode_peak_bytes, AutoencoderKl, LatentDistribution, TilePlan, VaeConfig,
    VaeError, VaeLimits, VaeTiling,
};

impl AutoencoderKl {
    /// [`AutoencoderKl::decode`], tiled when `tiling` and `limits` say so; decided before any
    /// allocation. Returns the image and the plan used (`None`: untiled).
    pub fn decode_tiled(
        &self,
        cfg: &VaeConfig,
        z: Tensor<4>,
        dtype: FloatDType,
        tiling: VaeTiling,
        limits: &VaeLimits,
    ) -> Result<(Tensor<4>, Option<TilePlan>), VaeError> {
        let [b, _, h, w] = z.dims();
        let peak = |th: usize, tw: usize| decode_peak_bytes(cfg, b, th, tw);
        match plan(tiling, limits, h, w, peak)? {
            None => Ok((self.decode(z, dtype), None)),
            Some(p) => Ok((self.decode_with_plan(z, dtype, p)?, Some(p))),
        }
    }

    /// Decodes tile by tile with `plan` and blends the tiles.
    pub fn decode_with_plan(
        &self,
        z: Tensor<4>,
        dtype: FloatDType,
        plan: TilePlan,
    ) -> Result<Tensor<4>, VaeError> {
        let [b, c, h, w] = z.dims();
        let device = z.device();
        let mut canvas = Canvas::new(b, 0, h * 8, w * 8);
        for (ys, ye) in spans(h, plan) {
            for (xs, xe) in spans(w, plan) {
                let tile = z.clone().slice([0..b, 0..c, ys..ye, xs..xe]); // [B, 4, th, tw]
                let image = self.decode(tile, dtype); // [B, 3, 8 th, 8 tw]
                canvas.add(
                    image,
                    [ys * 8, ye * 8],
                    [xs * 8, xe * 8],
                    plan.overlap * 8,
                    [h * 8, w * 8],
                )?;
            }
        }
        Ok(canvas.finish(&device))
    }

    /// [`AutoencoderKl::encode`], tiled when `tiling` and `limits` say so. The moments (mean,
    /// logvar before clamping) are blended across tiles.
    pub fn encode_tiled(
        &self,
        cfg: &VaeConfig,
        x: Tensor<4>,
        dtype: FloatDType,
        tiling: VaeTiling,
        limits: &VaeLimits,
    ) -> Result<(LatentDistribution, Option<TilePlan>), VaeError> {
        let [b, _, h, w] = x.dims();
        let peak = |th: usize, tw: usize| encode_peak_bytes(cfg, b, th * 8, tw * 8);
        match plan(tiling, limits, h / 8, w / 8, peak)? {
            None => Ok((self.encode(x, dtype), None)),
            Some(p) => Ok((self.encode_with_plan(x, dtype, p)?, Some(p))),
        }
    }

    /// Encodes tile by tile with `plan` (in latent pixels) and blends the moments.
    pub fn encode_with_plan(
        &self,
        x: Tensor<4>,
        dtype: FloatDType,
        plan: TilePlan,
    ) -> Result<LatentDistribution, VaeError> {
        let [b, c, h, w] = x.dims();
        let (lh, lw) = (h / 8, w / 8);
        let device = x.device();
        let mut canvas = None;
        for (ys, ye) in spans(lh, plan) {
            for (xs, xe) in spans(lw, plan) {
                let tile = x
                    .clone()
                    .slice([0..b, 0..c, ys * 8..ye * 8, xs * 8..xe * 8]);
                let d = self.encode(tile, dtype);
                let moments = Tensor::cat(vec![d.mean, d.logvar], 1); // [B, 8, th, tw]
                let channels = moments.dims()[1];
                canvas
                    .get_or_insert_with(|| Canvas::new(b, channels, lh, lw))
                    .add(moments, [ys, ye], [xs, xe], plan.overlap, [lh, lw])?;
            }
        }
        let moments = canvas.expect("at least one tile").finish(&device);
        let half = moments.dims()[1] / 2;
        Ok(LatentDistribution {
            mean: moments.clone().slice([0..b, 0..half, 0..lh, 0..lw]),
            logvar: moments.slice([0..b, half..2 * half, 0..lh, 0..lw]),
        })
    }
}
