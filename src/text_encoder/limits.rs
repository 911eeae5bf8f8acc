//! What a prompt may be, checked before any model runs (and again by the encoder): its size, the
//! weights its brackets give, and its chunk count. Parsing and tokenizing are linear in the
//! prompt's length, so these checks cost little even at the size limit.

use super::TextError;
use crate::tokenizer::{
    chunk_prompt, parse_prompt, ClipTokenizer, Flavor, ParsedPrompt, Prompt, PromptPart,
};

/// The longest prompt read, in bytes (about 200 chunks of ordinary text; A1111 sets none).
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
/// The most 75-token chunks a prompt may fill (2,464 context tokens).
pub const MAX_CHUNKS: usize = 32;
/// The largest prompt weight, either sign: `(word:1.5)` is common, and each level of
/// `(brackets)` multiplies by 1.1, so 24 levels stay within it and 25 pass it. Larger weights
/// only wreck the image, and push the weighted context toward f16's range in the UNet.
pub const MAX_PROMPT_WEIGHT: f32 = 10.0;

/// Checks a prompt pair without a model: each prompt's size, then its weights and chunk count.
pub fn check_prompts(prompt: &str, negative: &str) -> Result<(), TextError> {
    for (which, text) in [("prompt", prompt), ("negative prompt", negative)] {
        check_prompt_size(which, text)?;
        check_parsed(which, &parse_prompt(text))?;
    }
    Ok(())
}

/// [`check_prompts`] of prompts parsed already.
pub fn check_prompt_pair(prompt: &Prompt, negative: &Prompt) -> Result<(), TextError> {
    for (which, p) in [("prompt", prompt), ("negative prompt", negative)] {
        check_prompt_size(which, p.text())?;
        check_parsed(which, p.parsed())?;
    }
    Ok(())
}

/// At most [`MAX_PROMPT_BYTES`]: checked on the text before it is parsed, too.
pub fn check_prompt_size(which: &'static str, text: &str) -> Result<(), TextError> {
    if text.len() > MAX_PROMPT_BYTES {
        return Err(TextError::PromptTooLong {
            which,
            bytes: text.len(),
            max: MAX_PROMPT_BYTES,
        });
    }
    Ok(())
}

/// A parsed prompt's weights and chunk count.
fn check_parsed(which: &'static str, parsed: &ParsedPrompt) -> Result<(), TextError> {
    check_weights(parsed)?;
    let tokenizer = ClipTokenizer::shared();
    for flavor in Flavor::BOTH {
        check_chunks(which, chunk_prompt(tokenizer, parsed, flavor).len())?;
    }
    Ok(())
}

/// Every weight of `prompt` finite and within [`MAX_PROMPT_WEIGHT`].
pub fn check_weights(prompt: &ParsedPrompt) -> Result<(), TextError> {
    for part in &prompt.parts {
        if let PromptPart::Text { text, weight } = part {
            if !weight.is_finite() || weight.abs() > MAX_PROMPT_WEIGHT {
                return Err(TextError::Weight {
                    text: text.chars().take(80).collect(),
                    weight: *weight,
                    max: MAX_PROMPT_WEIGHT,
                });
            }
        }
    }
    Ok(())
}

/// At most [`MAX_CHUNKS`] chunks.
pub fn check_chunks(which: &'static str, chunks: usize) -> Result<(), TextError> {
    if chunks > MAX_CHUNKS {
        return Err(TextError::TooManyChunks {
            which,
            chunks,
            max: MAX_CHUNKS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_past_the_limits_are_refused() {
        let long = "a".repeat(MAX_PROMPT_BYTES + 1);
        assert!(matches!(
            check_prompts(&long, ""),
            Err(TextError::PromptTooLong {
                which: "prompt",
                ..
            })
        ));
        assert!(matches!(
            check_prompts("x", &long),
            Err(TextError::PromptTooLong {
                which: "negative prompt",
                ..
            })
        ));
        // 33 chunks: BREAK cuts one each
        let chunks = vec!["cat"; MAX_CHUNKS + 1].join(" BREAK ");
        let err = check_prompts(&chunks, "").expect_err("33 chunks");
        assert!(err.to_string().contains("33 chunks"), "{err}");
        assert!(check_prompts(&vec!["cat"; MAX_CHUNKS].join(" BREAK "), "").is_ok());
        for (prompt, ok) in [
            ("(cat:10)", true),
            ("(cat:-10)", true),
            ("(cat:10.5)", false),
            ("(cat:-11)", false),
            (&format!("{}cat{}", "(".repeat(24), ")".repeat(24)), true),
            (&format!("{}cat{}", "(".repeat(25), ")".repeat(25)), false),
        ] {
            let result = check_prompts(prompt, "");
            assert_eq!(result.is_ok(), ok, "{prompt}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, TextError::Weight { .. }), "{e}");
            }
        }
    }

    /// Shapes that were quadratic (failing nested groups re-read their tails; BPE rescanned a
    /// word per merge) now parse and tokenize at the size limit in a blink; `benches/prompt.rs`
    /// measures the growth.
    #[test]
    fn adversarial_prompts_at_the_limit_finish() {
        let depth = MAX_PROMPT_BYTES / 8;
        let nested = format!("{}x:{}", "(a:b ".repeat(depth), ")".repeat(depth));
        let word: String = (0..MAX_PROMPT_BYTES)
            .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
            .collect();
        for prompt in [nested, word] {
            let prompt = &prompt[..prompt.len().min(MAX_PROMPT_BYTES)];
            // refused or not, every check returns
            let _ = check_prompts(prompt, "");
        }
    }
}
