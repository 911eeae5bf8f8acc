//! CLIP's byte-level BPE: the 49,408-entry vocabulary built from open_clip's merges file the way
//! OpenAI's `simple_tokenizer.py` builds it (and transformers' `vocab.json` stores it), and the
//! merge loop of transformers' `CLIPTokenizer.bpe`.
//! <https://github.com/mlfoundations/open_clip/blob/v3.3.0/src/open_clip/tokenizer.py>

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
    /// `(left id, right id)` -> `(rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The id of each byte character, alone and as a word's last (`</w>`) symbol.
    chars: HashMap<char, (u32, u32)>,
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
        let pairs: Vec<(String, String)> = text
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
        tokens.extend(pairs.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(START_OF_TEXT.to_string());
        tokens.push(END_OF_TEXT.to_string());

        let vocab: HashMap<String, u32> = tokens.iter().cloned().zip(0u32..).collect();
        let id = |t: &str| vocab[t];
        let merges = pairs
            .iter()
            .zip(0u32..)
            .map(|((a, b), rank)| ((id(a), id(b)), (rank, id(&format!("{a}{b}")))))
            .collect();
        let chars = order
            .iter()
            .map(|&c| (c, (id(&c.to_string()), id(&format!("{c}</w>")))))
            .collect();
        Bpe {
            vocab,
            tokens,
            merges,
            chars,
        }
    }

    /// Splits one pre-token (already mapped through [`byte_encoder`]) into vocabulary ids, as
    /// transformers' `CLIPTokenizer.bpe` does: the last character carries `</w>`; the
    /// lowest-ranked adjacent pair is merged everywhere it occurs, left to right without
    /// overlap, until no ranked pair is left.
    ///
    /// Written by hand because that loop rescans the word after every merge (quadratic in its
    /// length): here the pairs wait in a heap by `(rank, position)`, and each rank's merges are
    /// taken as one left-to-right pass over the pairs that existed before it, which is exactly
    /// the reference's pass; a word of `n` characters costs `O(n log n)`.
    pub fn split(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        let Some(last) = chars.len().checked_sub(1) else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (alone, end) = self
                    .chars
                    .get(c)
                    .copied()
                    .unwrap_or((super::EOS, super::EOS));
                if i == last {
                    end
                } else {
                    alone
                }
            })
            .collect();
        let n = ids.len();
        // a doubly linked list over positions; a merged-away position is dead
        let mut next: Vec<usize> = (1..=n).collect(); // n = none
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect(); // usize::MAX = none
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let rank_at = |ids: &[u32], next: &[usize], i: usize| -> Option<(u32, u32)> {
            let j = *next.get(i)?;
            (j < ids.len())
                .then(|| self.merges.get(&(ids[i], ids[j])).copied())
                .flatten()
        };
        for i in 0..n {
            if let Some((rank, _)) = rank_at(&ids, &next, i) {
                heap.push(Reverse((rank, i)));
            }
        }
        while let Some(Reverse((rank, first))) = heap.pop() {
            // every pair of this rank that existed before the pass, left to right
            let mut positions = vec![first];
            while let Some(&Reverse((r, i))) = heap.peek() {
                if r != rank {
                    break;
                }
                positions.push(i);
                heap.pop();
            }
            positions.sort_unstable();
            positions.dedup();
            let mut touched = Vec::new();
            for i in positions {
                let valid = alive[i] && rank_at(&ids, &next, i).is_some_and(|(r, _)| r == rank);
                if !valid {
                    continue;
                }
                let (_, merged) = rank_at(&ids, &next, i).expect("checked");
                let j = next[i];
                ids[i] = merged;
                alive[j] = false;
                next[i] = next[j];
                if next[j] < n {
                    prev[next[j]] = i;
                }
                touched.push(i);
            }
            for i in touched {
                if !alive[i] {
                    continue;
                }
                for at in [prev[i], i] {
                    if at < n && alive[at] {
                        if let Some((r, _)) = rank_at(&ids, &next, at) {
                            heap.push(Reverse((r, at)));
                        }
                    }
                }
            }
        }
        (0..n).filter(|&i| alive[i]).map(|i| ids[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' loop, as written there: the reference [`Bpe::split`] must equal.
    fn reference_split(bpe: &Bpe, word: &str) -> Vec<u32> {
        let ranks: HashMap<(String, String), u32> = bpe
            .merges
            .iter()
            .map(|(&(a, b), &(rank, _))| {
                let t = |id: u32| bpe.tokens[id as usize].clone();
                ((t(a), t(b)), rank)
            })
            .collect();
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = symbols
                .windows(2)
                .filter_map(|p| ranks.get(&(p[0].clone(), p[1].clone())))
                .min();
            let Some(&rank) = best else { break };
            let mut merged = Vec::new();
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len()
                    && ranks.get(&(symbols[i].clone(), symbols[i + 1].clone())) == Some(&rank)
                {
                    merged.push(format!("{}{}", symbols[i], symbols[i + 1]));
                    i += 2;
                } else {
                    merged.push(symbols[i].clone());
                    i += 1;
                }
            }
            symbols = merged;
        }
        symbols.iter().map(|s| bpe.vocab[s]).collect()
    }

    #[test]
    fn split_equals_the_reference_loop() {
        let bpe = Bpe::embedded();
        let bytes = byte_encoder();
        let mut words: Vec<String> = [
            "a",
            "aa",
            "aaa",
            "aaaa",
            "aaaaaaaaaaaaa",
            "hello",
            "masterpiece",
            "illustration",
            "lllllllll",
            "eeeeeee",
            "ababababab",
            "1girl",
            "abcabcabcabc",
            "zzzzzzzzzzzz",
            "catcatcat",
            "thththththt",
            "mississippi",
            "aaabbbaaabbb",
        ]
        .iter()
        .map(|w| w.to_string())
        .collect();
        // a fixed pseudo-random set over a small alphabet, where merges collide often
        let mut state = 7u64;
        for _ in 0..300 {
            let len = 1 + (state % 24) as usize;
            let word: String = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b"aeilnorst"[(state >> 33) as usize % 9] as char
                })
                .collect();
            words.push(word);
        }
        words.push("日本語のテキスト".into());
        for word in words {
            let mapped: String = word.bytes().map(|b| bytes[b as usize]).collect();
            assert_eq!(bpe.split(&mapped), reference_split(&bpe, &mapped), "{word}");
        }
    }
}
