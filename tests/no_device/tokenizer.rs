//! The tokenizer against transformers' `CLIPTokenizer` on the committed corpus
//! (`tests/reference/make_text_fixtures.py`): both SDXL tokenizers, untruncated and as the
//! pipeline pads and truncates.

use sdxl_wgpu::tokenizer::{ClipTokenizer, Flavor, BOS, EOS};

#[derive(serde::Deserialize)]
struct Row {
    prompt: String,
    ids: Vec<u32>,
    ids_2: Vec<u32>,
    padded: Vec<u32>,
    padded_2: Vec<u32>,
}

fn corpus() -> Vec<Row> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer_corpus.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("corpus")
        .lines()
        .map(|l| serde_json::from_str(l).expect("corpus row"))
        .collect()
}

#[test]
fn ids_equal_transformers_clip_tokenizer() {
    let tokenizer = ClipTokenizer::shared();
    let rows = corpus();
    assert!(rows.len() >= 200, "corpus has {} prompts", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        for (flavor, want, want_padded) in [
            (Flavor::ClipL, &row.ids, &row.padded),
            (Flavor::BigG, &row.ids_2, &row.padded_2),
        ] {
            let mut got = vec![BOS];
            got.extend(tokenizer.encode(&row.prompt, flavor));
            got.push(EOS);
            let padded = tokenizer.encode_padded(&row.prompt, flavor);
            if &got != want || &padded != want_padded {
                failures.push(format!(
                    "{flavor:?} {:?}\n  want {want:?}\n  got  {got:?}",
                    row.prompt
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        rows.len() * 2,
        failures.join("\n")
    );
}

#[test]
fn corpus_covers_long_prompts() {
    let long = corpus().iter().filter(|r| r.ids.len() > 77).count();
    assert!(long >= 20, "{long} prompts longer than 77 tokens");
}
