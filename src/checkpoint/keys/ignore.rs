//! Tensors a checkpoint may carry that SDXL inference does not use. Each rule is named with
//! its reason, so `inspect` can say why a tensor was left out; anything not matched here and
//! not in a key table is reported as unused.

/// How a rule matches a full key.
#[derive(Clone, Copy, Debug)]
pub enum Pattern {
    Exact(&'static str),
    Prefix(&'static str),
    Suffix(&'static str),
}

/// A class of tensors we deliberately leave out, and why.
#[derive(Clone, Copy, Debug)]
pub struct IgnoreRule {
    pub pattern: Pattern,
    pub reason: &'static str,
}

const fn rule(pattern: Pattern, reason: &'static str) -> IgnoreRule {
    IgnoreRule { pattern, reason }
}

const SCHEDULE: &str = "training noise-schedule buffer (we compute the schedule)";

pub const IGNORED: &[IgnoreRule] = &[
    rule(
        Pattern::Suffix("embeddings.position_ids"),
        "CLIP position ids (always 0..77)",
    ),
    rule(
        Pattern::Suffix("logit_scale"),
        "CLIP contrastive temperature, unused for conditioning",
    ),
    rule(
        Pattern::Prefix("model_ema."),
        "EMA copy of the UNet weights",
    ),
    rule(Pattern::Exact("v_pred"), "v-prediction marker"),
    rule(Pattern::Exact("ztsnr"), "zero-terminal-SNR marker"),
    rule(Pattern::Prefix("denoiser."), "SGM denoiser buffer (sigmas)"),
    rule(Pattern::Exact("betas"), SCHEDULE),
    rule(Pattern::Exact("alphas_cumprod"), SCHEDULE),
    rule(Pattern::Exact("alphas_cumprod_prev"), SCHEDULE),
    rule(Pattern::Exact("sqrt_alphas_cumprod"), SCHEDULE),
    rule(Pattern::Exact("sqrt_one_minus_alphas_cumprod"), SCHEDULE),
    rule(Pattern::Exact("log_one_minus_alphas_cumprod"), SCHEDULE),
    rule(Pattern::Exact("sqrt_recip_alphas_cumprod"), SCHEDULE),
    rule(Pattern::Exact("sqrt_recipm1_alphas_cumprod"), SCHEDULE),
    rule(Pattern::Exact("posterior_variance"), SCHEDULE),
    rule(Pattern::Exact("posterior_log_variance_clipped"), SCHEDULE),
    rule(Pattern::Exact("posterior_mean_coef1"), SCHEDULE),
    rule(Pattern::Exact("posterior_mean_coef2"), SCHEDULE),
    rule(Pattern::Exact("lvlb_weights"), SCHEDULE),
];

/// Why `key` is deliberately left out, if it is.
pub fn reason(key: &str) -> Option<&'static str> {
    IGNORED.iter().find_map(|r| {
        let hit = match r.pattern {
            Pattern::Exact(p) => key == p,
            Pattern::Prefix(p) => key.starts_with(p),
            Pattern::Suffix(p) => key.ends_with(p),
        };
        hit.then_some(r.reason)
    })
}
