//! The element types of the safetensors format, and the one decoder of stored float bytes to
//! f32 that loading, the NaN scan, LoRA files and the CLI's tensor files all use.

use half::{bf16, f16};

/// The element types of the safetensors format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

/// The format's spelling of each dtype and its size in bytes.
const DTYPES: &[(&str, Dtype, usize)] = &[
    ("BOOL", Dtype::Bool, 1),
    ("U8", Dtype::U8, 1),
    ("I8", Dtype::I8, 1),
    ("F8_E5M2", Dtype::F8E5M2, 1),
    ("F8_E4M3", Dtype::F8E4M3, 1),
    ("I16", Dtype::I16, 2),
    ("U16", Dtype::U16, 2),
    ("F16", Dtype::F16, 2),
    ("BF16", Dtype::BF16, 2),
    ("I32", Dtype::I32, 4),
    ("U32", Dtype::U32, 4),
    ("F32", Dtype::F32, 4),
    ("F64", Dtype::F64, 8),
    ("I64", Dtype::I64, 8),
    ("U64", Dtype::U64, 8),
];

impl Dtype {
    pub fn parse(name: &str) -> Option<Dtype> {
        DTYPES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, d, _)| *d)
    }

    pub fn name(self) -> &'static str {
        DTYPES
            .iter()
            .find(|(_, d, _)| *d == self)
            .map_or("?", |(n, _, _)| n)
    }

    pub fn size(self) -> usize {
        DTYPES
            .iter()
            .find(|(_, d, _)| *d == self)
            .map_or(0, |(_, _, s)| *s)
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64 | Dtype::F8E4M3 | Dtype::F8E5M2
        )
    }

    /// Little-endian values of this dtype as f32 (every float dtype: f32, f16, bf16, f64 and
    /// both fp8 kinds); `None` for integer and boolean dtypes.
    pub fn to_f32(self, bytes: &[u8]) -> Option<Vec<f32>> {
        Some(match self {
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            Dtype::F8E4M3 => bytes.iter().map(|&b| f8_e4m3fn(b)).collect(),
            // e5m2 is the high byte of an f16.
            Dtype::F8E5M2 => bytes
                .iter()
                .map(|&b| f16::from_bits(u16::from(b) << 8).to_f32())
                .collect(),
            _ => return None,
        })
    }

    /// NaN and infinity counts of stored values of this dtype (zero for non-float dtypes).
    pub fn count_non_finite(self, bytes: &[u8]) -> (usize, usize) {
        self.to_f32(bytes).map_or((0, 0), |values| {
            let nan = values.iter().filter(|v| v.is_nan()).count();
            let inf = values.iter().filter(|v| v.is_infinite()).count();
            (nan, inf)
        })
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// PyTorch's `float8_e4m3fn`: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities,
/// `S.1111.111` is NaN; the largest value is 448.
fn f8_e4m3fn(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exp, mantissa) = (i32::from((b >> 3) & 0xf), f32::from(b & 0x7));
    if exp == 0xf && mantissa == 7.0 {
        return f32::NAN;
    }
    sign * match exp {
        0 => mantissa / 8.0 * 2f32.powi(-6),
        _ => (1.0 + mantissa / 8.0) * 2f32.powi(exp - 7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_values_decode_as_pytorch_defines_them() {
        let e4m3 = [
            (0x00, 0.0),
            (0x38, 1.0),
            (0x3c, 1.5),
            (0x40, 2.0),
            (0xb8, -1.0),
            (0x01, 2f32.powi(-9)),
            (0x08, 2f32.powi(-6)),
            (0x7e, 448.0),
        ];
        for (byte, value) in e4m3 {
            assert_eq!(f8_e4m3fn(byte), value, "e4m3 {byte:#04x}");
        }
        assert!(f8_e4m3fn(0x7f).is_nan() && f8_e4m3fn(0xff).is_nan());
        let e5m2 = Dtype::F8E5M2
            .to_f32(&[0x3c, 0xc0, 0x7c, 0x01])
            .expect("float");
        assert_eq!(e5m2[..3], [1.0, -2.0, f32::INFINITY]);
        assert_eq!(e5m2[3], 2f32.powi(-16));
    }
}
