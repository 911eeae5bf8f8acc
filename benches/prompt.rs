//! Parsing and tokenizing adversarial prompts (CPU only): each shape at 10 KB, 100 KB and 1 MB,
//! so the time per KB shows whether the work grows linearly with the length. These are above
//! the request limit (`MAX_PROMPT_BYTES`, 64 KB), which a request is refused at; the functions
//! themselves must stay linear so the limit is a policy, not what keeps a parse from taking
//! minutes.
//!
//! `cargo bench --bench prompt`. Shapes:
//! - `nested`: `((((...x:...` groups whose weights never parse, nested as deep as the size allows;
//! - `colons`: `(a:b:c:...)` repeated, each group failing on its last colon;
//! - `brackets`: `(word) [word]` repeated, every group valid;
//! - `one word`: a single letter run (`aaaa...`), one BPE word as long as the prompt;
//! - `random word`: one word of pseudo-random letters, which merges through many ranks;
//! - `words`: ordinary tags repeated (`masterpiece, best quality, `).

use std::time::Instant;

use sdxl_wgpu::tokenizer::{chunk_prompt, parse_prompt, ClipTokenizer, Flavor};

fn shape(name: &str, bytes: usize) -> String {
    let repeat = |unit: &str| unit.repeat(bytes / unit.len());
    match name {
        "nested" => {
            let depth = bytes / 8;
            format!("{}x:{}", "(a:b ".repeat(depth), ")".repeat(depth))
        }
        "colons" => repeat("(a:b:c:d:e:f:g) "),
        "brackets" => repeat("(word) [word] "),
        "one word" => "a".repeat(bytes),
        "random word" => {
            // letters from a fixed linear congruential sequence: one word, many merge ranks
            let mut state = 1u64;
            (0..bytes)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (b'a' + (state >> 33) as u8 % 26) as char
                })
                .collect()
        }
        _ => repeat("masterpiece, best quality, "),
    }
}

fn main() {
    let tokenizer = ClipTokenizer::shared();
    println!(
        "{:<10} {:>8} {:>12} {:>12} {:>10}",
        "shape", "KB", "parse ms", "tokens ms", "µs/KB"
    );
    for name in [
        "nested",
        "colons",
        "brackets",
        "one word",
        "random word",
        "words",
    ] {
        for kb in [10, 100, 1000] {
            let prompt = shape(name, kb * 1000);
            let start = Instant::now();
            let parsed = parse_prompt(&prompt);
            let parse = start.elapsed();
            let start = Instant::now();
            let chunks = chunk_prompt(tokenizer, &parsed, Flavor::ClipL).len()
                + chunk_prompt(tokenizer, &parsed, Flavor::BigG).len();
            let tokens = start.elapsed();
            std::hint::black_box(chunks);
            let total = (parse + tokens).as_secs_f64();
            println!(
                "{name:<10} {:>8} {:>12.2} {:>12.2} {:>10.1}",
                prompt.len() / 1000,
                parse.as_secs_f64() * 1e3,
                tokens.as_secs_f64() * 1e3,
                total * 1e6 / (prompt.len() as f64 / 1000.0),
            );
        }
    }
}
