//! The prompt syntax users bring from AUTOMATIC1111: `(text)` x1.1, `((text))` x1.21,
//! `[text]` /1.1, `(text:1.3)`, escaped `\(` `\)` `\[` `\]` `\\`, `BREAK` (start a new chunk) and
//! `<lora:name:weight>` tags, which are removed from the text and returned as requests.
//! Semantics follow A1111's `parse_prompt_attention`
//! (<https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/prompt_parser.py>)
//! with one deliberate difference: malformed syntax (an unbalanced bracket, `(x:abc)`) stays
//! literal text instead of weighting the rest of the prompt. Parsing never fails.

use std::path::PathBuf;
use std::sync::OnceLock;

use regex::Regex;

/// `(text)` multiplies by this, `[text]` divides by it.
pub const BRACKET_FACTOR: f32 = 1.1;

/// A piece of the parsed prompt, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptPart {
    /// Text with the product of the weights of the groups around it.
    Text { text: String, weight: f32 },
    /// `BREAK`: the next text starts a new 75-token chunk.
    Break,
}

/// One LoRA to apply: its file and its weights for the UNet and the text encoders (`--lora
/// PATH:W`, or a prompt's [`LoraTag`] once its name is resolved to a file).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub unet_weight: f32,
    pub text_encoder_weight: f32,
}

/// A prompt's `<lora:name:te_weight:unet_weight>` tag (A1111's order: one weight sets both;
/// named `te=` / `unet=` also work): the name as written, which the caller resolves in its LoRA
/// folder.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraTag {
    pub name: String,
    pub unet_weight: f32,
    pub text_encoder_weight: f32,
}

impl LoraTag {
    /// The tag's LoRA as the file `path`, with the tag's weights.
    pub fn spec(&self, path: PathBuf) -> LoraSpec {
        LoraSpec {
            path,
            unet_weight: self.unet_weight,
            text_encoder_weight: self.text_encoder_weight,
        }
    }
}

impl LoraSpec {
    /// The LoRA's name as A1111 shows it: the file's stem.
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParsedPrompt {
    pub parts: Vec<PromptPart>,
    pub loras: Vec<LoraTag>,
}

impl ParsedPrompt {
    /// True when the prompt has no text at all (after removing LoRA tags): SDXL then uses
    /// all-zero conditioning for it when it is the negative prompt.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| match p {
            PromptPart::Text { text, .. } => text.trim().is_empty(),
            PromptPart::Break => true,
        })
    }
}

/// A prompt as its user wrote it and as parsed, once: the text for metadata (infotext, A1111's
/// `info`), the parse for everything else (LoRA tags, checks, encoding), so no stage parses it
/// again.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    text: String,
    parsed: ParsedPrompt,
}

impl Prompt {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let parsed = parse_prompt(&text);
        Prompt { text, parsed }
    }

    /// As written (LoRA tags and brackets included).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn parsed(&self) -> &ParsedPrompt {
        &self.parsed
    }
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::new(String::new())
    }
}

impl From<String> for Prompt {
    fn from(text: String) -> Self {
        Prompt::new(text)
    }
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Self {
        Prompt::new(text)
    }
}

/// Parses `prompt`: removes LoRA tags, resolves weights and escapes, splits at `BREAK`, and
/// merges neighbouring text of equal weight (so `(cat:1.0)` is exactly `cat`).
pub fn parse_prompt(prompt: &str) -> ParsedPrompt {
    let (text, loras) = take_lora_tags(prompt);
    let mut parts: Vec<PromptPart> = Vec::new();
    for (piece, weight) in weighted_text(&text) {
        for (i, segment) in break_pattern().split(&piece).enumerate() {
            if i > 0 {
                parts.push(PromptPart::Break);
            }
            push_text(&mut parts, segment, weight);
        }
    }
    ParsedPrompt { parts, loras }
}

fn push_text(parts: &mut Vec<PromptPart>, text: &str, weight: f32) {
    if text.is_empty() {
        return;
    }
    if let Some(PromptPart::Text {
        text: last,
        weight: w,
    }) = parts.last_mut()
    {
        if *w == weight {
            last.push_str(text);
            return;
        }
    }
    parts.push(PromptPart::Text {
        text: text.to_string(),
        weight,
    });
}

fn break_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\s*\bBREAK\b\s*").expect("static pattern"))
}

fn lora_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"<(?:lora|lyco):([^<>]*)>").expect("static pattern"))
}

/// Removes well-formed LoRA tags; a malformed one (`<lora:>`, `<lora:x:abc>`) stays as text.
fn take_lora_tags(prompt: &str) -> (String, Vec<LoraTag>) {
    let mut loras = Vec::new();
    let mut text = String::with_capacity(prompt.len());
    let mut last = 0;
    for caps in lora_pattern().captures_iter(prompt) {
        let whole = caps.get(0).expect("match");
        if let Some(request) = lora_request(&caps[1]) {
            text.push_str(&prompt[last..whole.start()]);
            last = whole.end();
            loras.push(request);
        }
    }
    text.push_str(&prompt[last..]);
    (text, loras)
}

fn lora_request(args: &str) -> Option<LoraTag> {
    let mut args = args.split(':');
    let name = args.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let (mut te, mut unet) = (None, None);
    for (position, arg) in args.enumerate() {
        let arg = arg.trim();
        match arg.split_once('=') {
            Some(("te", v)) => te = Some(parse_float(v)?),
            Some(("unet", v)) => unet = Some(parse_float(v)?),
            Some(_) => return None,
            None if position == 0 => te = Some(parse_float(arg)?),
            None if position == 1 => unet = Some(parse_float(arg)?),
            None => return None,
        }
    }
    let te = te.unwrap_or(1.0);
    Some(LoraTag {
        name: name.to_string(),
        unet_weight: unet.unwrap_or(te),
        text_encoder_weight: te,
    })
}

/// A LoRA tag's weight as A1111 reads it (Python's `float()`: exponents, `inf` and `nan`
/// included); one out of range is the LoRA check's to refuse, not text to keep.
fn parse_float(s: &str) -> Option<f32> {
    s.trim().parse::<f32>().ok()
}

/// An attention weight as A1111 writes it: `[+-]?[0-9.]+` that parses as a number.
fn parse_weight(s: &str) -> Option<f32> {
    let s = s.trim();
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let valid = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    valid.then(|| s.parse::<f32>().ok()).flatten()
}

/// What each character of the text is, after bracket matching.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mark {
    /// Shown as text.
    Literal,
    /// A backslash that escapes the next character (not shown).
    Escape,
    /// A bracket that opens a group with this multiplier (not shown).
    Open(f32),
    /// A bracket or a `:weight)` tail that closes a group (not shown).
    Close,
}

/// An open bracket waiting for its partner.
struct Frame {
    at: usize,
    round: bool,
    /// The last `:` directly inside this group (not inside a nested group).
    colon: Option<usize>,
}

/// Splits `text` into runs of equal weight. Brackets are matched with a stack; a pair whose
/// kinds differ never matches, and a round group whose last top-level `:` is not followed by a
/// valid weight is left literal, as is every bracket without a partner.
fn weighted_text(text: &str) -> Vec<(String, f32)> {
    let chars: Vec<char> = text.chars().collect();
    let weight_runs = weight_runs(&chars);
    let mut marks = vec![Mark::Literal; chars.len()];
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() && matches!(chars[i + 1], '(' | ')' | '[' | ']' | '\\') => {
                marks[i] = Mark::Escape;
                i += 1; // the escaped character stays Literal
            }
            '(' | '[' => stack.push(Frame {
                at: i,
                round: chars[i] == '(',
                colon: None,
            }),
            ':' => {
                if let Some(frame) = stack.last_mut() {
                    frame.colon = Some(i);
                }
            }
            close @ (')' | ']') => {
                let round = close == ')';
                if stack.last().is_some_and(|f| f.round == round) {
                    let frame = stack.pop().expect("checked");
                    match group_weight(&chars, &weight_runs, &frame, i) {
                        Some((weight, tail)) => {
                            marks[frame.at] = Mark::Open(weight);
                            marks[tail..=i].fill(Mark::Close);
                        }
                        // Left literal: its colon now sits directly in the enclosing group.
                        None => {
                            if let (Some(parent), Some(c)) = (stack.last_mut(), frame.colon) {
                                parent.colon = Some(parent.colon.map_or(c, |p| p.max(c)));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }

    let mut runs: Vec<(String, f32)> = Vec::new();
    let mut weights: Vec<f32> = vec![1.0];
    for (&c, &mark) in chars.iter().zip(&marks) {
        match mark {
            Mark::Literal => {
                let weight = *weights.last().expect("base weight");
                match runs.last_mut() {
                    Some((run, w)) if *w == weight => run.push(c),
                    _ => runs.push((c.to_string(), weight)),
                }
            }
            Mark::Escape => {}
            Mark::Open(factor) => {
                let weight = weights.last().expect("base weight") * factor;
                weights.push(weight);
            }
            // A `:weight)` tail is several Close marks; only its bracket ends the group.
            Mark::Close if matches!(c, ')' | ']') => {
                weights.pop();
            }
            Mark::Close => {}
        }
    }
    runs
}

/// For each position `p`, where the run of characters a weight can hold (digits, `.`, signs,
/// spaces) that ends just before `p` starts (`p` itself when there is none).
fn weight_runs(chars: &[char]) -> Vec<usize> {
    let mut runs = Vec::with_capacity(chars.len() + 1);
    let mut start = 0;
    for (i, c) in chars.iter().enumerate() {
        runs.push(start);
        if !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-') || c.is_whitespace()) {
            start = i + 1;
        }
    }
    runs.push(start);
    runs
}

/// The multiplier of the group `frame` opens and `close` closes, and where its closing tail
/// starts: `(text)` 1.1, `[text]` 1/1.1, `(text:w)` w. `None` if the group is malformed.
///
/// A tail is only read when every character of it can be part of a weight (`runs`): such tails
/// end at distinct closing brackets and hold no bracket, so they never overlap, and parsing a
/// prompt stays linear in its length however its groups nest or fail.
fn group_weight(
    chars: &[char],
    runs: &[usize],
    frame: &Frame,
    close: usize,
) -> Option<(f32, usize)> {
    if !frame.round {
        return Some((1.0 / BRACKET_FACTOR, close));
    }
    match frame.colon {
        None => Some((BRACKET_FACTOR, close)),
        Some(colon) if runs[close] <= colon + 1 => {
            let tail: String = chars[colon + 1..close].iter().collect();
            parse_weight(&tail).map(|w| (w, colon))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, weight: f32) -> PromptPart {
        PromptPart::Text {
            text: t.into(),
            weight,
        }
    }

    fn parts(prompt: &str) -> Vec<PromptPart> {
        parse_prompt(prompt).parts
    }

    const F: f32 = BRACKET_FACTOR;

    #[test]
    fn plain_text_is_one_part() {
        assert_eq!(parts("1girl, solo"), vec![text("1girl, solo", 1.0)]);
        assert_eq!(parts(""), vec![]);
    }

    #[test]
    fn explicit_weights() {
        assert_eq!(
            parts("a (cat:1.3) b"),
            vec![text("a ", 1.0), text("cat", 1.3), text(" b", 1.0)]
        );
        assert_eq!(parts("(cat: 0.5 )"), vec![text("cat", 0.5)]);
        assert_eq!(parts("(cat:-1)"), vec![text("cat", -1.0)]);
        assert_eq!(parts("(cat:+.5)"), vec![text("cat", 0.5)]);
        assert_eq!(parts("(style:anime:1.2)"), vec![text("style:anime", 1.2)]);
    }

    #[test]
    fn weight_one_is_plain_text() {
        assert_eq!(parts("a (cat:1.0) b"), parts("a cat b"));
        assert_eq!(parts("(cat:1)"), vec![text("cat", 1.0)]);
    }

    #[test]
    fn brackets_multiply_and_nest() {
        assert_eq!(parts("(cat)"), vec![text("cat", F)]);
        assert_eq!(parts("((cat))"), vec![text("cat", F * F)]);
        assert_eq!(parts("[cat]"), vec![text("cat", 1.0 / F)]);
        assert_eq!(parts("[[cat]]"), vec![text("cat", (1.0 / F) * (1.0 / F))]);
        assert_eq!(parts("((cat:1.5))"), vec![text("cat", 1.5 * F)]);
        assert_eq!(
            parts("(a [b] (c:2))"),
            vec![
                text("a ", F),
                text("b", F * (1.0 / F)),
                text(" ", F),
                text("c", F * 2.0)
            ]
        );
        assert_eq!(parts("()x"), vec![text("x", 1.0)]);
    }

    #[test]
    fn escapes_are_literal() {
        assert_eq!(parts(r"\(cat\)"), vec![text("(cat)", 1.0)]);
        assert_eq!(parts(r"\[x\] \\ y"), vec![text(r"[x] \ y", 1.0)]);
        assert_eq!(parts(r"(a \) b)"), vec![text("a ) b", F)]);
        assert_eq!(parts(r"a\b"), vec![text(r"a\b", 1.0)]);
        assert_eq!(parts("trailing\\"), vec![text("trailing\\", 1.0)]);
    }

    #[test]
    fn malformed_syntax_stays_literal() {
        for p in [
            "(cat",
            "cat)",
            "[cat",
            "cat]",
            "(x:abc)",
            "(x:1.2.3)",
            "(x:)",
            "(x:-)",
            "(a]",
            "[a)",
            ")(",
            "((",
            "][",
            "(x:1e3)",
            "(x:inf)",
        ] {
            assert_eq!(parts(p), vec![text(p, 1.0)], "{p}");
        }
        assert_eq!(parts("((cat)"), vec![text("(", 1.0), text("cat", F)]);
        assert_eq!(parts("(cat))"), vec![text("cat", F), text(")", 1.0)]);
        assert_eq!(parts("((x:abc))"), vec![text("((x:abc))", 1.0)]);
        assert_eq!(parts("((x:abc):1.2)"), vec![text("(x:abc)", 1.2)]);
        assert_eq!(parts("[a:b]"), vec![text("a:b", 1.0 / F)]);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("{}cat{}", "(".repeat(20_000), ")".repeat(20_000));
        assert_eq!(parts(&deep).len(), 1);
        let open = "(".repeat(50_000);
        assert_eq!(parts(&open), vec![text(&open, 1.0)]);
    }

    #[test]
    fn break_starts_a_chunk() {
        assert_eq!(
            parts("a BREAK b"),
            vec![text("a", 1.0), PromptPart::Break, text("b", 1.0)]
        );
        assert_eq!(
            parts("a\nBREAK\nb"),
            vec![text("a", 1.0), PromptPart::Break, text("b", 1.0)]
        );
        assert_eq!(parts("BREAKING break"), vec![text("BREAKING break", 1.0)]);
        assert_eq!(
            parts("(a BREAK b)"),
            vec![text("a", F), PromptPart::Break, text("b", F)]
        );
        assert_eq!(parts("BREAK a"), vec![PromptPart::Break, text("a", 1.0)]);
    }

    #[test]
    fn lora_tags_are_requests() {
        let p = parse_prompt("1girl, <lora:Detail Tweaker:0.8>, smile <lora:style:0.5:1.2> <lora:x> <lyco:y:te=0.3:unet=0.7>");
        assert_eq!(p.parts, vec![text("1girl, , smile   ", 1.0)]);
        let want = [
            ("Detail Tweaker", 0.8, 0.8),
            ("style", 0.5, 1.2),
            ("x", 1.0, 1.0),
            ("y", 0.3, 0.7),
        ];
        assert_eq!(p.loras.len(), want.len());
        for (got, (name, te, unet)) in p.loras.iter().zip(want) {
            let name = Some(name);
            assert_eq!(
                (
                    Some(got.name.as_str()),
                    got.text_encoder_weight,
                    got.unet_weight
                ),
                (name, te, unet)
            );
        }
    }

    #[test]
    fn lora_weights_read_as_python_floats() {
        let p = parse_prompt("<lora:a:1e38> <lora:b:-2E-1> <lora:c:inf>");
        let weights: Vec<f32> = p.loras.iter().map(|l| l.text_encoder_weight).collect();
        assert_eq!(weights, [1e38, -0.2, f32::INFINITY]);
    }

    #[test]
    fn malformed_lora_tags_stay_text() {
        for t in [
            "<lora:>",
            "<lora::1>",
            "<lora:x:abc>",
            "<lora:x:1:2:3>",
            "<lora:x:foo=1>",
            "<hypernet:x:1>",
        ] {
            let p = parse_prompt(t);
            assert!(p.loras.is_empty(), "{t}");
            assert_eq!(p.parts, vec![text(t, 1.0)], "{t}");
        }
    }

    #[test]
    fn empty_means_no_text() {
        assert!(parse_prompt("").is_empty());
        assert!(parse_prompt("  <lora:x:1> ").is_empty());
        assert!(parse_prompt("BREAK").is_empty());
        assert!(!parse_prompt("(x)").is_empty());
    }
}
