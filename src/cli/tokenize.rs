//! `sdxl-wgpu tokenize PROMPT`: how the engine reads a prompt, without a model or a GPU: the
//! weighted parts, the LoRA tags, and the 75-token chunks with each token and its weight.

use clap::Args;
use serde::Serialize;

use super::say;
use sdxl_wgpu::text_encoder::{TextError, MAX_PROMPT_BYTES};
use sdxl_wgpu::tokenizer::{chunk_prompt, parse_prompt, ClipTokenizer, Flavor, PromptPart};

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// The prompt, in A1111 syntax.
    prompt: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Token {
    id: u32,
    text: String,
    weight: f32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Part {
    Text {
        text: String,
        weight: f32,
    },
    /// The string "BREAK".
    Break(&'static str),
}

#[derive(Serialize)]
struct Report {
    parts: Vec<Part>,
    loras: Vec<(String, f32, f32)>,
    /// Chunks as `tokenizer` (CLIP-L) reads them.
    chunks: Vec<Vec<Token>>,
    /// Chunks of `tokenizer_2` (bigG) when they differ (each `!` is its pad token, id 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks_2: Option<Vec<Vec<Token>>>,
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let tokenizer = ClipTokenizer::shared();
    if args.prompt.len() > MAX_PROMPT_BYTES {
        return Err(TextError::PromptTooLong {
            which: "prompt",
            bytes: args.prompt.len(),
            max: MAX_PROMPT_BYTES,
        }
        .into());
    }
    let parsed = parse_prompt(&args.prompt);
    let chunks = |flavor| -> Vec<Vec<Token>> {
        chunk_prompt(tokenizer, &parsed, flavor)
            .into_iter()
            .map(|c| {
                c.tokens
                    .iter()
                    .zip(&c.weights)
                    .map(|(&id, &weight)| Token {
                        id,
                        text: tokenizer.token_text(id).unwrap_or_default(),
                        weight,
                    })
                    .collect()
            })
            .collect()
    };
    let (l, g) = (chunks(Flavor::ClipL), chunks(Flavor::BigG));
    let same = l.len() == g.len()
        && l.iter()
            .flatten()
            .map(|t| t.id)
            .eq(g.iter().flatten().map(|t| t.id));
    let report = Report {
        parts: parsed
            .parts
            .iter()
            .map(|p| match p {
                PromptPart::Text { text, weight } => Part::Text {
                    text: text.clone(),
                    weight: *weight,
                },
                PromptPart::Break => Part::Break("BREAK"),
            })
            .collect(),
        loras: parsed
            .loras
            .iter()
            .map(|r| (r.name.clone(), r.text_encoder_weight, r.unet_weight))
            .collect(),
        chunks: l,
        chunks_2: (!same).then_some(g),
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    for part in &report.parts {
        match part {
            Part::Text { text, weight } => say!("{weight:>6.3}  {text:?}")?,
            Part::Break(b) => say!("{b}")?,
        }
    }
    for (name, te, unet) in &report.loras {
        say!("lora {name:?}: text encoders {te}, unet {unet}")?;
    }
    let show = |label: &str, chunks: &[Vec<Token>]| -> std::io::Result<()> {
        for (i, chunk) in chunks.iter().enumerate() {
            let tokens: Vec<String> = chunk
                .iter()
                .map(|t| {
                    if t.weight == 1.0 {
                        t.text.clone()
                    } else {
                        format!("{}:{:.3}", t.text, t.weight)
                    }
                })
                .collect();
            say!(
                "{label}chunk {} ({} tokens): {}",
                i + 1,
                chunk.len(),
                tokens.join(" ")
            )?;
        }
        Ok(())
    };
    show("", &report.chunks)?;
    if let Some(g) = &report.chunks_2 {
        show("tokenizer_2 ", g)?;
    }
    Ok(())
}
