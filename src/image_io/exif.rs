//! The infotext in JPEG and WebP files, where A1111 puts it: the EXIF `UserComment` tag of the
//! Exif IFD, `UNICODE\0` + UTF-16BE, in a big-endian TIFF structure as piexif writes it
//! (A1111's `save_image_with_geninfo`; read back by its PNG Info tab and by Civitai).
//! See <https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/master/modules/images.py>.

use std::borrow::Cow;

/// TIFF tag of the pointer from IFD0 to the Exif IFD.
const EXIF_IFD_POINTER: u16 = 0x8769;
/// Exif tag `UserComment`.
const USER_COMMENT: u16 = 0x9286;
/// TIFF field types used here.
const LONG: u16 = 4;
const UNDEFINED: u16 = 7;
/// The 8-byte character-code prefixes of `UserComment` (Exif 2.3, table 9).
const UNICODE_PREFIX: &[u8; 8] = b"UNICODE\0";
const ASCII_PREFIX: &[u8; 8] = b"ASCII\0\0\0";

/// The largest EXIF block (TIFF data) a JPEG holds: its APP1 segment carries at most 65,533 bytes
/// after its length field, 6 of them `Exif\0\0`.
pub const JPEG_MAX_EXIF_BYTES: usize = 65_527;
/// Bytes of [`user_comment_exif`]'s block besides the text: TIFF header, two one-entry IFDs, the
/// comment's character-code prefix.
const BLOCK_OVERHEAD: usize = 8 + 18 + 18 + 8;

/// `text` shortened, when needed, so that its [`user_comment_exif`] block takes at most `max`
/// bytes: the last line (A1111's settings line, what readers parse) is kept whole and the text
/// before it is cut, ending in `…`; a last line too long on its own is cut as well.
pub fn fit_comment(text: &str, max: usize) -> Cow<'_, str> {
    let budget = max.saturating_sub(BLOCK_OVERHEAD) / 2; // UTF-16 units
    let units = |t: &str| t.encode_utf16().count();
    if units(text) <= budget {
        return Cow::Borrowed(text);
    }
    // the longest prefix of `t` within `n` units, at a character boundary
    let prefix = |t: &str, n: usize| -> String {
        let mut used = 0;
        t.chars()
            .take_while(|c| {
                used += c.len_utf16();
                used <= n
            })
            .collect()
    };
    let ellipsis = "…";
    match text.rsplit_once('\n') {
        Some((head, last)) if units(last) + 2 <= budget => {
            let head = prefix(head, budget - units(last) - 2);
            Cow::Owned(format!("{head}{ellipsis}\n{last}"))
        }
        _ => Cow::Owned(format!("{}{ellipsis}", prefix(text, budget - 1))),
    }
}

/// The EXIF block (TIFF data, without JPEG's `Exif\0\0` marker) holding `text` as `UserComment`:
/// IFD0 with one entry pointing to the Exif IFD, which has one entry, the comment.
pub fn user_comment_exif(text: &str) -> Vec<u8> {
    let mut comment = UNICODE_PREFIX.to_vec();
    comment.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    // offsets from the start of the TIFF header: header 8, each one-entry IFD 2 + 12 + 4
    let exif_ifd = 8 + 18;
    let data = exif_ifd + 18;
    let mut out = Vec::with_capacity(data + comment.len());
    out.extend_from_slice(b"MM");
    out.extend_from_slice(&42u16.to_be_bytes());
    out.extend_from_slice(&8u32.to_be_bytes());
    let mut ifd = |tag: u16, kind: u16, count: usize, value: usize| {
        out.extend_from_slice(&1u16.to_be_bytes()); // one entry
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(count as u32).to_be_bytes());
        out.extend_from_slice(&(value as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    };
    ifd(EXIF_IFD_POINTER, LONG, 1, exif_ifd);
    // the comment is always over 4 bytes (the prefix alone is 8), so it lies at an offset
    ifd(USER_COMMENT, UNDEFINED, comment.len(), data);
    out.extend_from_slice(&comment);
    out
}

/// The `UserComment` of an EXIF block (either byte order), decoded by its character-code prefix;
/// `None` when the block has none or is malformed.
pub fn read_user_comment(exif: &[u8]) -> Option<String> {
    let exif = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let big = match exif.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    // the unsigned number of `n` bytes at `at`
    let at = |at: usize, n: usize| Some(uint(exif.get(at..at.checked_add(n)?)?, big));
    // (count, value or offset) of `tag` in the IFD at `ifd`
    let find = |ifd: usize, tag: u16| {
        (0..at(ifd, 2)?).find_map(|i| {
            let entry = ifd + 2 + 12 * i;
            (at(entry, 2)? == usize::from(tag)).then_some(())?;
            Some((at(entry + 4, 4)?, at(entry + 8, 4)?))
        })
    };
    let (_, exif_ifd) = find(at(4, 4)?, EXIF_IFD_POINTER)?;
    let (count, offset) = find(exif_ifd, USER_COMMENT)?;
    let comment = exif.get(offset..offset.checked_add(count)?)?;
    let (prefix, body) = comment.split_at_checked(8)?;
    if prefix == UNICODE_PREFIX {
        let units: Vec<u16> = body.chunks_exact(2).map(|b| uint(b, big) as u16).collect();
        String::from_utf16(&units).ok()
    } else if prefix == ASCII_PREFIX {
        String::from_utf8(body.to_vec()).ok()
    } else {
        None
    }
}

/// `bytes` as one unsigned number, big- or little-endian.
fn uint(bytes: &[u8], big: bool) -> usize {
    let digit = |n: usize, &b: &u8| n << 8 | usize::from(b);
    if big {
        bytes.iter().fold(0, digit)
    } else {
        bytes.iter().rev().fold(0, digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_comment_is_piexifs_layout_and_reads_back() {
        let exif = user_comment_exif("a");
        // piexif.dump({"Exif": {UserComment: UserComment.dump("a", "unicode")}})'s layout, plus
        // the Exif IFD's next-IFD offset (0) that TIFF asks for and piexif leaves out. Files
        // written this way read back through A1111's reader (Pillow 13 + piexif 1.1.3), checked
        // by hand: tests/reference does not pin piexif.
        let mut want = b"MM\0\x2a\0\0\0\x08".to_vec();
        want.extend([0, 1, 0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0]);
        want.extend([0, 1, 0x92, 0x86, 0, 7, 0, 0, 0, 10, 0, 0, 0, 44, 0, 0, 0, 0]);
        want.extend(b"UNICODE\0\0a");
        assert_eq!(exif, want);
        let text = "1girl, café, 猫\nNegative prompt: bad\nSteps: 20, Seed: 1";
        assert_eq!(
            read_user_comment(&user_comment_exif(text)).as_deref(),
            Some(text)
        );
        // little-endian (as Windows writes it), behind JPEG's APP1 marker
        let mut le = b"Exif\0\0II\x2a\0\x08\0\0\0".to_vec();
        le.extend([1, 0, 0x69, 0x87, 4, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0, 0, 0, 0]);
        le.extend([1, 0, 0x86, 0x92, 7, 0, 12, 0, 0, 0, 44, 0, 0, 0, 0, 0, 0, 0]);
        le.extend(b"UNICODE\0a\0b\0");
        assert_eq!(read_user_comment(&le).as_deref(), Some("ab"));
        assert_eq!(read_user_comment(b"MM\0\x2a"), None);
        assert_eq!(read_user_comment(b""), None);
    }
}
