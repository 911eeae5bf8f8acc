//! Text to token ids: CLIP's BPE tokenizer with the vocabulary shipped in the binary (single-file
//! checkpoints carry none), and the prompt syntax users write (A1111 weights, `BREAK`, LoRA tags)
//! cut into the 75-token chunks SDXL's encoders read.
//!
//! Both SDXL tokenizers share the vocabulary; they differ in the padding id (`tokenizer`:
//! end-of-text 49407, `tokenizer_2`: `!` = 0) and, because transformers makes every pad token a
//! special token, `tokenizer_2` also turns each `!` in the text into id 0. See [`Flavor`].

mod bpe;
mod chunks;
mod normalize;
mod prompt;

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

pub use chunks::{chunk_prompt, Chunk, CHUNK_TOKENS};
pub use normalize::normalize;
pub use prompt::{parse_prompt, LoraSpec, LoraTag, ParsedPrompt, Prompt, PromptPart};

/// Id of `<|startoftext|>`.
pub const BOS: u32 = 49406;
/// Id of `<|endoftext|>`.
pub const EOS: u32 = 49407;
/// Tokens per encoder call: start, 75 text tokens, end (or padding).
pub const SEQUENCE_LEN: usize = 77;

/// Which of SDXL's two tokenizers: they share the BPE and differ in their pad token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `tokenizer`, for CLIP-L: pads with `<|endoftext|>`.
    ClipL,
    /// `tokenizer_2`, for bigG: pads with `!` (id 0), and since transformers splits special
    /// tokens out of the text before BPE, every `!` in a prompt becomes id 0 too.
    BigG,
}

impl Flavor {
    pub const BOTH: [Flavor; 2] = [Flavor::ClipL, Flavor::BigG];

    /// The id after the end token up to 77.
    pub fn pad_id(self) -> u32 {
        match self {
            Flavor::ClipL => EOS,
            Flavor::BigG => EXCLAMATION,
        }
    }
}

/// Id of `!` (without the end-of-word mark), `tokenizer_2`'s pad token.
const EXCLAMATION: u32 = 0;

/// CLIP's tokenizer, equal to transformers' `CLIPTokenizer` (without `ftfy`) on every input.
pub struct ClipTokenizer {
    bpe: bpe::Bpe,
    bytes: [char; 256],
    /// transformers' pre-tokenizer: special tokens, English contractions, letter runs, single
    /// digits, runs of anything else that is not a space.
    pattern: Regex,
}

impl ClipTokenizer {
    /// The process-wide tokenizer (the vocabulary is built once, ~50 ms).
    pub fn shared() -> &'static ClipTokenizer {
        static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();
        TOKENIZER.get_or_init(|| ClipTokenizer {
            bpe: bpe::Bpe::embedded(),
            bytes: bpe::byte_encoder(),
            pattern: Regex::new(
                r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
            )
            .expect("static pattern"),
        })
    }

    /// Ids of `text` as `flavor` tokenizes it, without start and end tokens or truncation.
    pub fn encode(&self, text: &str, flavor: Flavor) -> Vec<u32> {
        match flavor {
            Flavor::ClipL => self.encode_text(text),
            Flavor::BigG => {
                let mut ids = Vec::new();
                for (i, piece) in text.split('!').enumerate() {
                    if i > 0 {
                        ids.push(EXCLAMATION);
                    }
                    ids.extend(self.encode_text(piece));
                }
                ids
            }
        }
    }

    /// BPE ids of text that holds no special token of its own.
    fn encode_text(&self, text: &str) -> Vec<u32> {
        let text = normalize(text);
        let mut ids = Vec::new();
        let mut words: HashMap<&str, Vec<u32>> = HashMap::new();
        for piece in self.pattern.find_iter(&text) {
            let piece = piece.as_str();
            if piece == bpe::START_OF_TEXT || piece == bpe::END_OF_TEXT {
                ids.push(self.bpe.vocab[piece]);
                continue;
            }
            // a prompt repeats its words: each distinct one goes through BPE once
            let split = words.entry(piece).or_insert_with(|| {
                let word: String = piece.bytes().map(|b| self.bytes[b as usize]).collect();
                self.bpe.split(&word)
            });
            ids.extend_from_slice(split);
        }
        ids
    }

    /// The ids SDXL's pipeline feeds an encoder for `text`: start, at most 75 text tokens, end,
    /// padding to 77 (`padding="max_length", truncation=True`).
    pub fn encode_padded(&self, text: &str, flavor: Flavor) -> Vec<u32> {
        let ids = self.encode(text, flavor);
        let body = &ids[..ids.len().min(SEQUENCE_LEN - 2)];
        wrap(body, flavor)
    }

    /// The vocabulary size (49,408).
    pub fn vocab_size(&self) -> usize {
        self.bpe.vocab.len()
    }

    /// The readable text of token `id` (`</w>` marks a word end), for showing tokens to users.
    pub fn token_text(&self, id: u32) -> Option<String> {
        let token = self.bpe.tokens.get(id as usize)?;
        if id == BOS || id == EOS {
            return Some(token.clone());
        }
        let (body, end) = match token.strip_suffix("</w>") {
            Some(body) => (body, "</w>"),
            None => (token.as_str(), ""),
        };
        let byte = |c: char| self.bytes.iter().position(|&b| b == c).map(|b| b as u8);
        let bytes: Vec<u8> = body.chars().filter_map(byte).collect();
        Some(format!("{}{end}", String::from_utf8_lossy(&bytes)))
    }
}

/// `[BOS, body..., EOS, pad...]`, 77 ids; `body` must hold at most 75.
pub fn wrap(body: &[u32], flavor: Flavor) -> Vec<u32> {
    let mut ids = Vec::with_capacity(SEQUENCE_LEN);
    ids.push(BOS);
    ids.extend_from_slice(body);
    ids.push(EOS);
    ids.resize(SEQUENCE_LEN, flavor.pad_id());
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_clips() {
        let t = ClipTokenizer::shared();
        assert_eq!(t.vocab_size(), 49408);
        assert_eq!(t.token_text(2368).as_deref(), Some("cat</w>"));
        assert_eq!(t.token_text(BOS).as_deref(), Some("<|startoftext|>"));
        assert_eq!(t.token_text(49408), None);
        let l = Flavor::ClipL;
        assert_eq!(t.encode("<|startoftext|>", l), vec![BOS]);
        assert_eq!(t.encode("<|endoftext|>", l), vec![EOS]);
        let cat = vec![320, 1125, 539, 320, 2368];
        assert_eq!(t.encode("a photo of a cat", l), cat);
        assert_eq!(t.encode("a photo of a cat", Flavor::BigG), cat);
    }

    #[test]
    fn exclamation_is_special_to_tokenizer_2() {
        let t = ClipTokenizer::shared();
        assert_eq!(t.encode("wow!!", Flavor::ClipL), vec![2781, 748]);
        assert_eq!(t.encode("wow!!", Flavor::BigG), vec![2781, 0, 0]);
    }

    #[test]
    fn padding_differs_per_tokenizer() {
        let t = ClipTokenizer::shared();
        let l = t.encode_padded("cat", Flavor::ClipL);
        let g = t.encode_padded("cat", Flavor::BigG);
        assert_eq!(&l[..3], &[BOS, 2368, EOS]);
        assert_eq!(&g[..3], &[BOS, 2368, EOS]);
        assert!(l[3..].iter().all(|&i| i == EOS));
        assert!(g[3..].iter().all(|&i| i == 0));
        assert_eq!(l.len(), SEQUENCE_LEN);
    }
}
