//! A parsed prompt as the encoders read it: 75-token chunks, each later wrapped in start and end
//! tokens and padded to 77, with a weight per token. As A1111 does, every text part is tokenized
//! on its own, chunks are cut every 75 tokens and at each `BREAK`, and an empty prompt is one empty
//! chunk.

use super::{wrap, ClipTokenizer, Flavor, ParsedPrompt, PromptPart, SEQUENCE_LEN};

/// Text tokens per chunk.
pub const CHUNK_TOKENS: usize = SEQUENCE_LEN - 2;

/// Up to 75 text tokens and their weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    pub tokens: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Chunk {
    /// The 77 ids an encoder reads: start, tokens, end, padding.
    pub fn ids(&self, flavor: Flavor) -> Vec<u32> {
        wrap(&self.tokens, flavor)
    }

    /// The 77 weights matching [`Chunk::ids`]: 1 for start, end and padding.
    pub fn multipliers(&self) -> Vec<f32> {
        let mut m = Vec::with_capacity(SEQUENCE_LEN);
        m.push(1.0);
        m.extend_from_slice(&self.weights);
        m.resize(SEQUENCE_LEN, 1.0);
        m
    }

    /// True when some token carries a weight other than 1.
    pub fn is_weighted(&self) -> bool {
        self.weights.iter().any(|&w| w != 1.0)
    }
}

/// Tokenizes `prompt` into chunks (at least one) as `flavor` tokenizes it.
pub fn chunk_prompt(
    tokenizer: &ClipTokenizer,
    prompt: &ParsedPrompt,
    flavor: Flavor,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk::default();
    for part in &prompt.parts {
        match part {
            PromptPart::Break => chunks.push(std::mem::take(&mut current)),
            PromptPart::Text { text, weight } => {
                for token in tokenizer.encode(text, flavor) {
                    if current.tokens.len() == CHUNK_TOKENS {
                        chunks.push(std::mem::take(&mut current));
                    }
                    current.tokens.push(token);
                    current.weights.push(*weight);
                }
            }
        }
    }
    if !current.tokens.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{parse_prompt, BOS, EOS};

    fn chunks(prompt: &str) -> Vec<Chunk> {
        chunk_prompt(
            ClipTokenizer::shared(),
            &parse_prompt(prompt),
            Flavor::ClipL,
        )
    }

    #[test]
    fn short_prompt_is_one_chunk() {
        let c = chunks("a photo of a cat");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].tokens, vec![320, 1125, 539, 320, 2368]);
        assert_eq!(
            &c[0].ids(Flavor::ClipL)[..7],
            &[BOS, 320, 1125, 539, 320, 2368, EOS]
        );
        assert!(!c[0].is_weighted());
    }

    #[test]
    fn empty_prompt_is_one_empty_chunk() {
        let c = chunks("");
        assert_eq!(c, vec![Chunk::default()]);
        assert_eq!(&c[0].ids(Flavor::BigG)[..3], &[BOS, EOS, 0]);
    }

    #[test]
    fn long_prompts_split_every_75_tokens() {
        let c = chunks(&"cat ".repeat(75));
        assert_eq!(c.len(), 1);
        let c = chunks(&"cat ".repeat(160));
        assert_eq!(
            c.iter().map(|c| c.tokens.len()).collect::<Vec<_>>(),
            vec![75, 75, 10]
        );
    }

    #[test]
    fn break_cuts_a_chunk() {
        let c = chunks("a BREAK b");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].tokens, vec![320]);
        assert_eq!(c[1].tokens, vec![321]);
        assert_eq!(chunks("BREAK a").len(), 2);
        assert_eq!(chunks("a BREAK").len(), 1);
    }

    #[test]
    fn weights_follow_their_tokens() {
        let c = chunks("a (red cat:1.5) [sat]");
        let m = c[0].multipliers();
        assert_eq!(m.len(), SEQUENCE_LEN);
        assert_eq!(&m[..6], &[1.0, 1.0, 1.5, 1.5, 1.0 / 1.1, 1.0]);
        assert!(c[0].is_weighted());
        assert_eq!(chunks("a (cat:1.0) b"), chunks("a cat b"));
    }
}
