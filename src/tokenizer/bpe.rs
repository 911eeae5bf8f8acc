//! CLIP's byte-level BPE: the 49,408-entry vocabulary built from open_clip's merges file the way
//! OpenAI's `simple_tokenizer.py` builds it (and transformers' `vocab.json` stores it), and the
//! merge loop of transformers' `CLIPTokenizer.bpe`.
//! <https://github.com/mlfoundations/open_clip/blob/v3.3.0/src/open_clip/tokenizer.py>

use std::collections::HashMap;
use std::io::Read;

/// open_clip's `bpe_simple_vocab_16e6.txt.gz` (MIT; see `BPE-LICENSE` beside it).
const MERGES_GZ: &[u8] = include_bytes!("bpe_simple_vocab_16e6.txt.gz");
/// CLIP uses the first 49152 - 256 - 2 merges of the file (after its version line).
const MERGE_COUNT: usize = 49152 - 256 - 2;

pub const START_OF_TEXT: &str = "<|startoftext|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
/// themselves, the rest to U+0100.. in byte order.
pub fn byte_encoder() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1")
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143");
            next += 1;
            c
        };
    }
    table
}

/// The vocabulary (token string <-> id) and merge ranks.
pub struct Bpe {
    pub vocab: HashMap<String, u32>,
    /// id -> token string
    pub tokens: Vec<String>,
    ranks: HashMap<(String, String), u32>,
}

impl Bpe {
    /// Decompresses the embedded merges file and builds the vocabulary in CLIP's order: the 256
    /// byte characters (printable ones first), the same with `</w>`, one token per merge, then
    /// the start and end tokens.
    pub fn embedded() -> Self {
        let mut text = String::new();
        flate2::read::GzDecoder::new(MERGES_GZ)
            .read_to_string(&mut text)
            .expect("the embedded BPE merges file is valid gzip'd UTF-8");
        let merges: Vec<(String, String)> = text
            .lines()
            .skip(1)
            .take(MERGE_COUNT)
            .map(|line| {
                let (a, b) = line.split_once(' ').expect("a merge is two symbols");
                (a.to_string(), b.to_string())
            })
            .collect();

        let bytes = byte_encoder();
        let mut order: Vec<char> = (0..256)
            .filter(|&b| (bytes[b] as u32) < 256)
            .map(|b| bytes[b])
            .collect();
        order.extend(
            (0..256)
                .filter(|&b| (bytes[b] as u32) >= 256)
                .map(|b| bytes[b]),
        );
        let mut tokens: Vec<String> = order.iter().map(char::to_string).collect();
        tokens.extend(order.iter().map(|c| format!("{c}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(START_OF_TEXT.to_string());
        tokens.push(END_OF_TEXT.to_string());

        let vocab = tokens.iter().cloned().zip(0u32..).collect();
        let ranks = merges.into_iter().zip(0u32..).collect();
        Bpe {
            vocab,
            tokens,
            ranks,
        }
    }

    /// Splits one pre-token (already mapped through [`byte_encoder`]) into vocabulary symbols:
    /// the last character carries `</w>`; the lowest-ranked adjacent pair is merged everywhere
    /// it occurs until no ranked pair is left.
    pub fn split(&self, word: &str) -> Vec<String> {
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = symbols
                .windows(2)
                .filter_map(|pair| self.ranks.get(&(pair[0].clone(), pair[1].clone())))
                .min();
            let Some(&rank) = best else { break };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && self
                        .ranks
                        .get(&(symbols[i].clone(), symbols[i + 1].clone()))
                        == Some(&rank)
                {
                    merged.push(format!("{}{}", symbols[i], symbols[i + 1]));
                    i += 2;
                } else {
                    merged.push(symbols[i].clone());
                    i += 1;
                }
            }
            symbols = merged;
            if symbols.len() == 1 {
                break;
            }
        }
        symbols
    }
}
