#!/usr/bin/env python3
"""Builds the text-conditioning reference fixtures: the tokenizer corpus and the encoder outputs.

Never run in CI. Run after make_fixtures.py, in the same pinned environment:

    ~/refenv/bin/python tests/reference/make_text_fixtures.py

The tokenizers are transformers' CLIPTokenizer (the slow one SDXL's pipeline loads) built from the
BPE merges the engine embeds (src/tokenizer/bpe_simple_vocab_16e6.txt.gz): vocab.json is derived
from the merges exactly as OpenAI's simple_tokenizer does, which is what the hub's vocab.json holds.
`ftfy` is not installed (nor required by diffusers), so CLIPTokenizer uses its BasicTokenizer path.
tokenizer_2 is the same with pad_token "!" as SDXL's tokenizer_2/tokenizer_config.json says.

Writes, under tests/fixtures/:
  tokenizer_corpus.jsonl     one prompt per line with both tokenizers' ids: untruncated with start
                             and end tokens, and padded/truncated to 77 as the pipeline calls them
  text_reference.safetensors f32 prompt_embeds / pooled_prompt_embeds and the negative pair for
                             each case, from the tiny model's encoders in f32; each case's inputs
                             are in the file's metadata
"""

import gzip
import json
import random
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import save_file
from transformers import CLIPTokenizer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
FOLDER = FIXTURES / "tiny-sdxl"
MERGES = REPO / "src" / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def tokenizers(workdir: Path):
    """CLIPTokenizer (pads with <|endoftext|>) and tokenizer_2 (pads with "!")."""
    lines = gzip.open(MERGES).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    (workdir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (workdir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    args = dict(vocab_file=str(workdir / "vocab.json"), merges_file=str(workdir / "merges.txt"), model_max_length=77)
    tok = CLIPTokenizer(**args)
    tok_2 = CLIPTokenizer(**args, pad_token="!")
    assert tok.fix_text is None, "uninstall ftfy: the reference is CLIPTokenizer's default BasicTokenizer path"
    return tok, tok_2


TAGS = (
    "1girl 1boy 2girls solo multiple_girls long_hair short_hair twintails ponytail blonde_hair "
    "silver_hair black_hair blue_eyes red_eyes heterochromia smile open_mouth blush looking_at_viewer "
    "school_uniform serafuku maid_headdress hatsune_miku detached_sleeves thighhighs outdoors "
    "cherry_blossoms night_sky starry_sky city_lights upper_body full_body from_above dutch_angle "
    "masterpiece best_quality amazing_quality very_aesthetic absurdres highres newest score_9 "
    "score_8_up score_7_up rating_safe sensitive depth_of_field bokeh lens_flare cinematic_lighting "
    "holding_umbrella rain wet_clothes cat_ears animal_ear_fluff fang :d ;) ^_^ >_< o_o"
).split()
NEGATIVE_TAGS = (
    "lowres bad_anatomy bad_hands text error missing_fingers extra_digit fewer_digits cropped "
    "worst_quality low_quality normal_quality jpeg_artifacts signature watermark username blurry "
    "artist_name 3d realistic photo monochrome greyscale"
).split()

HANDWRITTEN = [
    "",
    " ",
    "a photo of a cat",
    "A Photo Of A CAT",
    "A PHOTO OF A CAT",
    "1girl, solo, long hair, masterpiece, best quality",
    "masterpiece, best quality, 1girl, solo, looking at viewer, smile, outdoors, cherry blossoms",
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality",
    "score_9, score_8_up, score_7_up, source_anime, rating_safe",
    "very awa, masterpiece, best quality, year 2024, newest, highres, absurdres",
    "1girl,solo,long_hair,blue_eyes",
    "  leading and trailing   spaces  ",
    "tabs\tand\tnewlines\nand\r\ncarriage returns",
    "many     spaces      between     words",
    "\n\n\nnewlines only around\n\n",
    "punctuation!!! really?! yes... no; maybe: (perhaps) [or] {not} <ok> \"quoted\" 'single'",
    "hello, world. how are you? fine!",
    "a-b_c/d\\e|f~g`h@i#j$k%l^m&n*o+p=q",
    "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
    "ellipsis… em—dash en–dash “curly quotes” ‘curly single’ «guillemets»",
    "don't, it's, I'm, we'll, they've, she'd, you're, isn't",
    "DON'T IT'S I'M WE'LL THEY'VE SHE'D YOU'RE",
    "o'clock rock'n'roll 'tis ma'am y'all",
    "it’s don’t (curly apostrophes)",
    "the cat's toy and the cats' toys",
    "1girl 2girls 3boys 10 100 1000 1024x1024 3.14159 1,000,000 2024-11-26 v2.0",
    "0123456789",
    "year 2024, 4k, 8k uhd, 35mm, f/1.8, iso100",
    "café, naïve, résumé, Über, straße, ﬁ ligature, Ångström, crème brûlée",
    "Café with combining: Cafe\u0301, nai\u0308ve",
    "日本語のプロンプト",
    "初音ミク, 東方Project, 艦これ",
    "かわいい女の子 カタカナ ｶﾀｶﾅ",
    "한국어 프롬프트",
    "русский текст, ελληνικά, עברית, العربية",
    "emoji 🐱 cat 🐶 dog 👍🏽 thumbs 👨‍👩‍👧 family 🇯🇵 flag",
    "😀😃😄😁😆😅🤣😂",
    "ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ　ａｎｄ　ｓｐａｃｅｓ １２３",
    "zero\u200bwidth\u200bspace and bom\ufeffhere",
    "control\x00char\x07bell\x1bescape\x7fdel",
    "soft\u00adhyphen and nbsp\u00a0here and\u2028line sep",
    "replacement \ufffd char",
    "<|startoftext|> explicit special tokens <|endoftext|>",
    "<|ENDOFTEXT|> upper case special",
    "wow!!! amazing!! ! ! !",
    "!",
    "!!!!!!!!!!",
    "(masterpiece:1.2), (best quality), [blurry], ((detailed)), \\(escaped\\)",
    "<lora:add_detail:0.8> 1girl <lora:style:0.5>",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "&amp; &lt;html&gt; &quot;entities&quot; &#39;",
    "snake_case_words and camelCaseWords and kebab-case-words",
    "ThIs Is MiXeD cAsE tExT",
    "İstanbul ΣΊΣΥΦΟΣ",
    "a" * 1,
    "x " * 80,
    "tag, " * 40,
    "BREAK is just a word for the tokenizer BREAK",
]


def anime_prompts(rng: random.Random, count: int):
    out = []
    for i in range(count):
        n = rng.randint(3, 60 if i % 5 else 120)
        tags = [rng.choice(TAGS) for _ in range(n)]
        if i % 3 == 0:
            tags = [t.replace("_", " ") for t in tags]
        sep = rng.choice([", ", ",", " , ", ",  "])
        text = sep.join(tags)
        if i % 7 == 0:
            text = text.upper()
        if i % 11 == 0:
            text = "  " + text.replace(", ", ",\n") + "\t"
        out.append(text)
    for i in range(count // 4):
        out.append(", ".join(rng.sample(NEGATIVE_TAGS, rng.randint(3, len(NEGATIVE_TAGS)))))
    return out


def corpus():
    rng = random.Random(20261126)
    prompts = HANDWRITTEN + anime_prompts(rng, 140)
    assert len(prompts) >= 200, len(prompts)
    return prompts


def write_corpus(tok, tok_2):
    rows = []
    long_count = 0
    for prompt in corpus():
        ids = tok(prompt).input_ids
        ids_2 = tok_2(prompt).input_ids
        padded = tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        padded_2 = tok_2(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        long_count += len(ids) > 77
        rows.append(dict(prompt=prompt, ids=ids, ids_2=ids_2, padded=padded, padded_2=padded_2))
    assert long_count >= 20, long_count
    path = FIXTURES / "tokenizer_corpus.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{path}: {len(rows)} prompts, {long_count} longer than 77 tokens")


# ---- encoder references ---------------------------------------------------------------------

SHORT = "1girl, solo, long hair, masterpiece, best quality"
NEGATIVE = "lowres, bad anatomy, worst quality, blurry"
LONG = (
    "masterpiece, best quality, amazing quality, very aesthetic, absurdres, newest, 1girl, solo, "
    "long hair, silver hair, twintails, blue eyes, looking at viewer, smile, open mouth, blush, "
    "school uniform, serafuku, pleated skirt, thighhighs, holding umbrella, outdoors, rain, "
    "wet clothes, city lights, night sky, starry sky, cherry blossoms, petals, wind, depth of field, "
    "bokeh, lens flare, cinematic lighting, upper body, from above, dutch angle, cat ears, fang, "
    "animal ear fluff, detached sleeves, hair ribbon, red ribbon, earrings, necklace, bracelet, "
    "frills, lace trim, gradient background, sparkle, light particles, reflection, puddle, street"
)
# The weighted case: the prompt as a user writes it, and the same as (text, weight) fragments the
# way A1111's parser returns them (each fragment tokenized on its own).
WEIGHTED = "masterpiece, (red hair:1.3), [blurry], ((smile)), \\(artist\\), (eyes:0.5)"
WEIGHTED_FRAGMENTS = [
    ("masterpiece, ", 1.0), ("red hair", 1.3), (", ", 1.0), ("blurry", 1 / 1.1), (", ", 1.0),
    ("smile", 1.1 * 1.1), (", (artist), ", 1.0), ("eyes", 0.5),
]
BREAK_PROMPT = "1girl, solo BREAK outdoors, night sky"
BREAK_CHUNKS = ["1girl, solo", "outdoors, night sky"]


def chunk_ids(tok, fragments):
    """A1111 chunking: fragments tokenized on their own, 75 tokens per chunk."""
    tokens, weights = [], []
    for text, weight in fragments:
        ids = tok(text, add_special_tokens=False).input_ids
        tokens += ids
        weights += [weight] * len(ids)
    chunks = []
    for start in range(0, max(len(tokens), 1), 75):
        chunks.append((tokens[start : start + 75], weights[start : start + 75]))
    return chunks


def wrap(tok, tokens, weights):
    ids = [tok.bos_token_id] + tokens + [tok.eos_token_id]
    ids += [tok.pad_token_id] * (77 - len(ids))
    mult = [1.0] + weights + [1.0] * (76 - len(weights))
    return ids, mult


def encode_manual(pipe, chunks_per_encoder, clip_skip=None):
    """Per-chunk encodings concatenated along the sequence axis; pooled from the first chunk.
    `chunks_per_encoder` is [(tokenizer_chunks_ids, multipliers)] for both encoders."""
    skip = 0 if clip_skip is None else clip_skip
    embeds, pooled = [], None
    for encoder, (ids, mults) in zip([pipe.text_encoder, pipe.text_encoder_2], chunks_per_encoder):
        out = encoder(torch.tensor(ids), output_hidden_states=True)
        z = out.hidden_states[-(skip + 2)].clone()  # [chunks, 77, C]
        m = torch.tensor(mults, dtype=torch.float32)
        for c in range(z.shape[0]):
            if (m[c] != 1.0).any():
                original = z[c].mean()
                z[c] = z[c] * m[c][:, None]
                z[c] = z[c] * (original / z[c].mean())
        embeds.append(z.reshape(1, -1, z.shape[-1]))
        if encoder is pipe.text_encoder_2:
            pooled = out[0][:1]
    return torch.cat(embeds, dim=-1), pooled


def prompt_chunks(pipe, fragments_per_chunk):
    """[(ids, multipliers) for CLIP-L, same for bigG] from a list of chunks of fragments."""
    result = []
    for tok in (pipe.tokenizer, pipe.tokenizer_2):
        ids, mults = [], []
        for fragments in fragments_per_chunk:
            for tokens, weights in chunk_ids(tok, fragments):
                i, m = wrap(tok, tokens, weights)
                ids.append(i)
                mults.append(m)
        result.append((ids, mults))
    return result


def pad_chunks(a, b):
    """Pads both prompts' chunk lists to the same count with empty chunks, as A1111 does."""
    for enc in range(2):
        for x, y in ((a, b), (b, a)):
            while len(x[enc][0]) < len(y[enc][0]):
                tok_pad = 49407 if enc == 0 else 0
                x[enc][0].append([49406, 49407] + [tok_pad] * 75)
                x[enc][1].append([1.0] * 77)


def close(a, b, what):
    err = (a - b).abs().max().item()
    assert err < 1e-5, f"{what}: manual chunk encoding differs from encode_prompt by {err}"


def write_encodings(tok, tok_2):
    pipe = StableDiffusionXLPipeline.from_pretrained(
        FOLDER, tokenizer=tok, tokenizer_2=tok_2, variant="fp16", torch_dtype=torch.float32
    )
    tensors, cases = {}, {}

    def put(name, prompt, negative, clip_skip, pe, ne, pp, npool):
        cases[name] = dict(prompt=prompt, negative=negative, clip_skip=clip_skip)
        for key, t in [("prompt_embeds", pe), ("negative_prompt_embeds", ne),
                       ("pooled_prompt_embeds", pp), ("negative_pooled_prompt_embeds", npool)]:
            tensors[f"{name}.{key}"] = t.detach().float().contiguous()

    with torch.no_grad():
        # diffusers' own encode_prompt: empty negative -> zeros; a real negative; clip skip.
        pe, ne, pp, npool = pipe.encode_prompt(SHORT, device="cpu", do_classifier_free_guidance=True)
        assert ne.abs().max() == 0 and npool.abs().max() == 0
        manual = encode_manual(pipe, prompt_chunks(pipe, [[(SHORT, 1.0)]]))
        close(manual[0], pe, "short"), close(manual[1], pp, "short pooled")
        put("short", SHORT, "", 0, pe, ne, pp, npool)

        pe, ne, pp, npool = pipe.encode_prompt(
            SHORT, device="cpu", do_classifier_free_guidance=True, negative_prompt=NEGATIVE
        )
        put("negative", SHORT, NEGATIVE, 0, pe, ne, pp, npool)

        # clip_skip=1; diffusers applies it to the positive only, the engine to both: the
        # negative is the manual encoding with the same skip.
        pe, _, pp, _ = pipe.encode_prompt(SHORT, device="cpu", do_classifier_free_guidance=True, clip_skip=1)
        manual = encode_manual(pipe, prompt_chunks(pipe, [[(SHORT, 1.0)]]), clip_skip=1)
        close(manual[0], pe, "clip skip")
        ne, npool = encode_manual(pipe, prompt_chunks(pipe, [[(NEGATIVE, 1.0)]]), clip_skip=1)
        put("clip_skip_1", SHORT, NEGATIVE, 1, pe, ne, pp, npool)

        # 150 tokens: two chunks; the one-chunk negative is padded with an empty chunk.
        pos = prompt_chunks(pipe, [[(LONG, 1.0)]])
        neg = prompt_chunks(pipe, [[(NEGATIVE, 1.0)]])
        n_tokens = len(tok(LONG, add_special_tokens=False).input_ids)
        assert 140 <= n_tokens <= 150 and len(pos[0][0]) == 2, n_tokens
        pad_chunks(pos, neg)
        pe, pp = encode_manual(pipe, pos)
        ne, npool = encode_manual(pipe, neg)
        put("long", LONG, NEGATIVE, 0, pe, ne, pp, npool)

        # Weights with A1111's mean restoration, per encoder and chunk.
        pe, pp = encode_manual(pipe, prompt_chunks(pipe, [WEIGHTED_FRAGMENTS]))
        put("weighted", WEIGHTED, "", 0, pe, torch.zeros_like(pe), pp, torch.zeros_like(pp))

        # BREAK: one chunk per side of it.
        pe, pp = encode_manual(pipe, prompt_chunks(pipe, [[(c, 1.0)] for c in BREAK_CHUNKS]))
        put("break", BREAK_PROMPT, "", 0, pe, torch.zeros_like(pe), pp, torch.zeros_like(pp))

    path = FIXTURES / "text_reference.safetensors"
    save_file(tensors, path, metadata={"cases": json.dumps(cases)})
    print(f"{path}: {len(cases)} cases, {len(tensors)} tensors")


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tok, tok_2 = tokenizers(Path(d))
        write_corpus(tok, tok_2)
        write_encodings(tok, tok_2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
