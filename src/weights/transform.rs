//! How a stored tensor becomes a canonical parameter when the file's layout differs from the
//! module's: a slice of a fused tensor, a transposed matrix, a 1x1 convolution used as a linear
//! layer. Every transform is a byte operation on the stored values; key tables name one per row.

/// How the stored tensor becomes the canonical one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Transform {
    /// Stored as is.
    None,
    /// Part `index` of `parts` equal slices along dim 0 (open_clip's fused q/k/v `in_proj`).
    SplitRows { index: usize, parts: usize },
    /// A 2-D matrix stored transposed (open_clip's `text_projection`, `[width, proj]`).
    Transpose,
    /// A 1x1 convolution `[out, in, 1, 1]` used as a linear layer `[out, in]` (LDM VAE attention).
    Squeeze1x1,
}

impl Transform {
    /// The stored shape that produces a tensor of `canonical` shape.
    pub fn source_shape(self, canonical: &[usize]) -> Vec<usize> {
        match self {
            Transform::None => canonical.to_vec(),
            Transform::SplitRows { parts, .. } => {
                let mut s = canonical.to_vec();
                s[0] *= parts;
                s
            }
            Transform::Transpose => canonical.iter().rev().copied().collect(),
            Transform::Squeeze1x1 => [canonical, &[1, 1]].concat(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transform::None => "none",
            Transform::SplitRows { .. } => "split fused q/k/v",
            Transform::Transpose => "transpose",
            Transform::Squeeze1x1 => "squeeze 1x1 conv",
        }
    }

    /// Whether the stored bytes already are the canonical tensor's bytes.
    pub fn keeps_bytes(self) -> bool {
        matches!(self, Transform::None | Transform::Squeeze1x1)
    }

    /// The canonical tensor's bytes from the stored ones (`stored` shape, `size`-byte values).
    pub fn apply(self, bytes: &[u8], stored: &[usize], size: usize) -> Vec<u8> {
        match self {
            Transform::None | Transform::Squeeze1x1 => bytes.to_vec(),
            Transform::SplitRows { index, parts } => {
                let part = bytes.len() / parts;
                bytes[index * part..(index + 1) * part].to_vec()
            }
            Transform::Transpose => {
                // stored [rows, cols] -> canonical [cols, rows]
                let (rows, cols) = (stored[0], stored[1]);
                let mut out = vec![0u8; bytes.len()];
                for i in 0..rows {
                    for j in 0..cols {
                        let (from, to) = ((i * cols + j) * size, (j * rows + i) * size);
                        out[to..to + size].copy_from_slice(&bytes[from..from + size]);
                    }
                }
                out
            }
        }
    }
}
