//! Quantized weight blocks: the ggml formats GGUF files hold (F32, F16, BF16, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0 and the K-quants Q2_K–Q6_K), their dequantization and, for the formats
//! tunesmith writes, their quantization.
//!
//! Dequantization follows the reference arithmetic of gguf-py (`gguf.quants`) operation for
//! operation in f32, so its results are bit-identical (checked against fixtures it wrote).

mod encode;
mod kquants;
mod legacy;
mod matrix;

use crate::error::{EngineError, Result};

pub use encode::{quantize_q4_k, quantize_q5_0, quantize_q6_k};
pub use kquants::QK_K;
pub use legacy::{quantize_q8_0, QK};
pub use matrix::{QuantFormat, QuantMatrix, NF4_BLOCK, NF4_LEVELS};

/// A ggml tensor type, by its GGUF type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 32 weights: an f16 scale and 4-bit values offset by 8.
    Q4_0,
    /// 32 weights: f16 scale and minimum, 4-bit values.
    Q4_1,
    /// 32 weights: an f16 scale and 5-bit values offset by 16.
    Q5_0,
    /// 32 weights: f16 scale and minimum, 5-bit values.
    Q5_1,
    /// 32 weights: an f16 scale and 8-bit values.
    Q8_0,
    /// 256 weights in 16 groups: 4-bit group scales and minimums, 2-bit values.
    Q2K,
    /// 256 weights in 16 groups: 6-bit group scales, 3-bit values.
    Q3K,
    /// 256 weights in 8 groups: 6-bit group scales and minimums, 4-bit values.
    Q4K,
    /// 256 weights in 8 groups: 6-bit group scales and minimums, 5-bit values.
    Q5K,
    /// 256 weights in 16 groups: 8-bit group scales, 6-bit values.
    Q6K,
}

impl GgmlType {
    /// Every type this module reads.
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    /// The type of a GGUF type id, if this module reads it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// ggml's name (`Q4_K`, `F16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
        }
    }

    /// Weights per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => QK,
            _ => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }

    /// Bytes that `n` weights take, or `None` if `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_len()).then(|| n / self.block_len() * self.block_bytes())
    }
}

/// Dequantizes `n` weights of type `ty` from `bytes` into f32.
///
/// Errors if `n` is not a whole number of blocks or `bytes` holds a different amount.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; n];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dequantizes `bytes` of type `ty` into `out` (whose length is the number of weights).
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let n = out.len();
    let want = ty.bytes_for(n).ok_or_else(|| {
        EngineError::invalid(
            "dequantize",
            format!("{n} weights are not whole {} blocks of {}", ty.name(), ty.block_len()),
        )
    })?;
    if bytes.len() != want {
        return Err(EngineError::invalid(
            "dequantize",
            format!("{n} {} weights take {want} bytes, got {}", ty.name(), bytes.len()),
        ));
    }
    let (bl, bb) = (ty.block_len(), ty.block_bytes());
    let blocks = bytes.chunks_exact(bb).zip(out.chunks_exact_mut(bl));
    match ty {
        GgmlType::F32 => {
            for (b, o) in blocks {
                o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, o) in blocks {
                o[0] = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (b, o) in blocks {
                o[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
            }
        }
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| legacy::q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| legacy::q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| legacy::q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| legacy::q5_1(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| legacy::q8_0(b, o)),
        GgmlType::Q2K => blocks.for_each(|(b, o)| kquants::q2_k(b, o)),
        GgmlType::Q3K => blocks.for_each(|(b, o)| kquants::q3_k(b, o)),
        GgmlType::Q4K => blocks.for_each(|(b, o)| kquants::q4_k(b, o)),
        GgmlType::Q5K => blocks.for_each(|(b, o)| kquants::q5_k(b, o)),
        GgmlType::Q6K => blocks.for_each(|(b, o)| kquants::q6_k(b, o)),
    }
    Ok(())
}

/// Quantizes `x` into type `ty`: F32, F16, Q8_0, Q5_0, Q4_K or Q6_K (the types tunesmith
/// writes). Errors for other types and for lengths that are not whole blocks.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let bytes = ty.bytes_for(x.len()).ok_or_else(|| {
        EngineError::invalid(
            "quantize",
            format!("{} weights are not whole {} blocks of {}", x.len(), ty.name(), ty.block_len()),
        )
    })?;
    let mut out = vec![0u8; bytes];
    let (bl, bb) = (ty.block_len(), ty.block_bytes());
    let blocks = x.chunks_exact(bl).zip(out.chunks_exact_mut(bb));
    match ty {
        GgmlType::F32 => blocks.for_each(|(x, o)| o.copy_from_slice(&x[0].to_le_bytes())),
        GgmlType::F16 => {
            blocks.for_each(|(x, o)| o.copy_from_slice(&half::f16::from_f32(x[0]).to_bits().to_le_bytes()))
        }
        GgmlType::Q8_0 => blocks.for_each(|(x, o)| quantize_q8_0(x, o)),
        GgmlType::Q5_0 => blocks.for_each(|(x, o)| quantize_q5_0(x, o)),
        GgmlType::Q4K => blocks.for_each(|(x, o)| quantize_q4_k(x, o)),
        GgmlType::Q6K => blocks.for_each(|(x, o)| quantize_q6_k(x, o)),
        other => {
            return Err(EngineError::invalid("quantize", format!("tunesmith does not write {}", other.name())));
        }
    }
    Ok(out)
}

/// The f32 value of little-endian f16 bytes.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

#[cfg(test)]
mod tests;
