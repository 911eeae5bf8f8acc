//! Text clean-up before BPE, exactly as transformers' `CLIPTokenizer` does it when `ftfy` is not
//! installed (the default install of diffusers): its `BasicTokenizer(strip_accents=False,
//! do_split_on_punc=False)` drops control characters, turns whitespace into spaces, puts spaces
//! around CJK ideographs, NFC-normalises, lower-cases and joins the words with single spaces.
//! <https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/models/clip/tokenization_clip.py>

use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// Characters `_clean_text` removes: NUL, U+FFFD and every "C*" category (control, format,
/// unassigned, private use, surrogate) except tab, newline and carriage return.
fn removed() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[\p{C}\x{FFFD}--[\t\n\r]]").expect("static pattern"))
}

/// Characters `_clean_text` turns into a space: tab, newline, carriage return and "Zs".
fn spaced() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[\t\n\r\p{Zs}]").expect("static pattern"))
}

/// The CJK ideograph blocks `_is_chinese_char` lists (not kana, not hangul).
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// The text the BPE pre-tokenizer sees: cleaned, CJK-spaced, NFC, lower case, words joined by
/// one space, no leading or trailing space.
pub fn normalize(text: &str) -> String {
    let cleaned = removed().replace_all(text, "");
    let cleaned = spaced().replace_all(&cleaned, " ");
    let mut spaced_cjk = String::with_capacity(cleaned.len());
    for c in cleaned.chars() {
        if is_cjk_ideograph(c) {
            spaced_cjk.push(' ');
            spaced_cjk.push(c);
            spaced_cjk.push(' ');
        } else {
            spaced_cjk.push(c);
        }
    }
    let nfc: String = spaced_cjk.nfc().collect();
    nfc.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn cleans_like_basic_tokenizer() {
        assert_eq!(normalize("  Hello\t\tWORLD \n"), "hello world");
        assert_eq!(normalize("a\u{0}b\u{200B}c\u{FFFD}d"), "abcd");
        assert_eq!(normalize("日本語"), "日 本 語");
        assert_eq!(normalize("ｶﾀｶﾅ かな"), "ｶﾀｶﾅ かな");
        // e + combining acute composes to é
        assert_eq!(normalize("Cafe\u{301}"), "caf\u{e9}");
        assert_eq!(normalize("a\u{3000}b"), "a b");
    }
}
