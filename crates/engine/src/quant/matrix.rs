//! A frozen weight matrix kept quantized in memory (QLoRA's base): rows of `cols` weights in a
//! ggml block format (a GGUF file's own blocks), or in NF4, QLoRA's 4-bit NormalFloat with
//! double-quantized scales. Products dequantize one panel of rows at a time into a small
//! buffer ([`QuantMatrix::dequantize_rows`]), so the f32 matrix never exists whole.

use rayon::prelude::*;

use super::{dequantize_into, quantize_q8_0, GgmlType};
use crate::error::{EngineError, Result};

/// The 16 NF4 levels: quantiles of a standard normal scaled to [-1, 1] (QLoRA, Dettmers et al.
/// 2023, as bitsandbytes defines them).
pub const NF4_LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];
/// Weights per NF4 block (one absmax scale each), as QLoRA uses.
pub const NF4_BLOCK: usize = 64;
/// NF4 blocks per group of the second quantization of their scales.
pub const NF4_SCALE_GROUP: usize = 256;

/// How a [`QuantMatrix`] stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    /// A ggml block format, rows laid out as GGUF stores them.
    Ggml(GgmlType),
    /// NF4 codes in blocks of 64 with 8-bit scales, double-quantized per group of 256 blocks.
    Nf4,
}

impl QuantFormat {
    /// A short name (`Q4_K`, `nf4`).
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Ggml(t) => t.name(),
            QuantFormat::Nf4 => "nf4",
        }
    }
}

/// A `rows × cols` matrix in a quantized format.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    /// The blocks (ggml) or the NF4 codes, two per byte (low nibble first).
    data: Vec<u8>,
    /// NF4: each block's absmax, as an int8 offset from its group's mean in steps of the
    /// group's scale.
    nf4_scales: Vec<i8>,
    /// NF4: per group of [`NF4_SCALE_GROUP`] blocks, (mean, step) of the absmaxes.
    nf4_groups: Vec<(f32, f32)>,
}

impl QuantMatrix {
    /// Wraps ggml blocks of a `rows × cols` matrix (GGUF's layout: each row whole blocks).
    pub fn from_ggml(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QuantMatrix> {
        let row_bytes = ty.bytes_for(cols).ok_or_else(|| {
            EngineError::invalid("QuantMatrix", format!("rows of {cols} are not whole {} blocks", ty.name()))
        })?;
        if data.len() != rows * row_bytes {
            return Err(EngineError::invalid(
                "QuantMatrix",
                format!("{rows}×{cols} {} takes {} bytes, got {}", ty.name(), rows * row_bytes, data.len()),
            ));
        }
        Ok(QuantMatrix { format: QuantFormat::Ggml(ty), rows, cols, data, nf4_scales: vec![], nf4_groups: vec![] })
    }

    /// Quantizes a row-major f32 matrix to Q8_0 (`cols` a multiple of 32).
    pub fn q8_0(w: &[f32], rows: usize, cols: usize) -> Result<QuantMatrix> {
        if !cols.is_multiple_of(32) || w.len() != rows * cols {
            return Err(EngineError::invalid("QuantMatrix::q8_0", format!("{rows}×{cols} needs rows of whole 32s")));
        }
        let mut data = vec![0u8; rows * cols / 32 * 34];
        data.par_chunks_mut(34).zip(w.par_chunks(32)).for_each(|(o, x)| quantize_q8_0(x, o));
        Self::from_ggml(GgmlType::Q8_0, rows, cols, data)
    }

    /// Quantizes a row-major f32 matrix to NF4 with double-quantized scales (`cols` a multiple
    /// of 64): each block of 64 is scaled by its absmax and every weight takes the nearest of
    /// the 16 NF4 levels; the absmaxes are stored as int8 steps around their group's mean.
    pub fn nf4(w: &[f32], rows: usize, cols: usize) -> Result<QuantMatrix> {
        if !cols.is_multiple_of(NF4_BLOCK) || w.len() != rows * cols {
            return Err(EngineError::invalid("QuantMatrix::nf4", format!("{rows}×{cols} needs rows of whole 64s")));
        }
        let absmax: Vec<f32> = w.par_chunks(NF4_BLOCK).map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs()))).collect();
        let nf4_groups: Vec<(f32, f32)> = absmax
            .chunks(NF4_SCALE_GROUP)
            .map(|g| {
                let mean = g.iter().sum::<f32>() / g.len() as f32;
                let spread = g.iter().fold(0f32, |m, v| m.max((v - mean).abs()));
                (mean, if spread > 0.0 { spread / 127.0 } else { 1.0 })
            })
            .collect();
        let nf4_scales: Vec<i8> = absmax
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (mean, step) = nf4_groups[i / NF4_SCALE_GROUP];
                ((a - mean) / step).round().clamp(-127.0, 127.0) as i8
            })
            .collect();
        let mut data = vec![0u8; w.len() / 2];
        data.par_chunks_mut(NF4_BLOCK / 2).zip(w.par_chunks(NF4_BLOCK)).enumerate().for_each(|(i, (out, block))| {
            let (mean, step) = nf4_groups[i / NF4_SCALE_GROUP];
            let scale = mean + nf4_scales[i] as f32 * step;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (o, pair) in out.iter_mut().zip(block.chunks_exact(2)) {
                *o = nearest_nf4(pair[0] * inv) | (nearest_nf4(pair[1] * inv) << 4);
            }
        });
        Ok(QuantMatrix { format: QuantFormat::Nf4, rows, cols, data, nf4_scales, nf4_groups })
    }

    /// The storage format.
    pub fn format(&self) -> QuantFormat {
        self.format
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (codes and scales).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.nf4_scales.len() + self.nf4_groups.len() * 8
    }

    /// Dequantizes rows `r0..r0 + out.len() / cols` into `out` (row-major), in parallel.
    pub fn dequantize_rows(&self, r0: usize, out: &mut [f32]) {
        let n = out.len() / self.cols;
        assert!(r0 + n <= self.rows && out.len() == n * self.cols, "rows out of range");
        match self.format {
            QuantFormat::Ggml(ty) => {
                let row_bytes = ty.bytes_for(self.cols).expect("checked at construction");
                let src = &self.data[r0 * row_bytes..(r0 + n) * row_bytes];
                out.par_chunks_mut(self.cols).zip(src.par_chunks(row_bytes)).for_each(|(o, b)| {
                    dequantize_into(ty, b, o).expect("whole blocks, checked at construction");
                });
            }
            QuantFormat::Nf4 => {
                let first_block = r0 * self.cols / NF4_BLOCK;
                let codes = &self.data[r0 * self.cols / 2..(r0 + n) * self.cols / 2];
                out.par_chunks_mut(NF4_BLOCK).zip(codes.par_chunks(NF4_BLOCK / 2)).enumerate().for_each(
                    |(i, (o, c))| {
                        let block = first_block + i;
                        let (mean, step) = self.nf4_groups[block / NF4_SCALE_GROUP];
                        let scale = mean + self.nf4_scales[block] as f32 * step;
                        for (pair, &byte) in o.chunks_exact_mut(2).zip(c) {
                            pair[0] = NF4_LEVELS[(byte & 0x0F) as usize] * scale;
                            pair[1] = NF4_LEVELS[(byte >> 4) as usize] * scale;
                        }
                    },
                );
            }
        }
    }

    /// The whole matrix in f32 (for merging adapters and exporting).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut out);
        out
    }
}

/// The index of the NF4 level nearest to `x` (in [-1, 1]).
fn nearest_nf4(x: f32) -> u8 {
    let mut best = 0;
    let mut dist = f32::INFINITY;
    for (i, &l) in NF4_LEVELS.iter().enumerate() {
        let d = (x - l).abs();
        if d < dist {
            best = i;
            dist = d;
        }
    }
    best as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 * 0.731).sin() + 0.3 * (i as f32 * 0.17).cos()) * 0.05).collect()
    }

    #[test]
    fn nf4_keeps_weights_within_its_level_spacing() {
        let (rows, cols) = (40, 192);
        let w = values(rows * cols);
        let q = QuantMatrix::nf4(&w, rows, cols).unwrap();
        assert!(q.bytes() * 7 < w.len() * 4, "{} bytes for {} weights", q.bytes(), w.len());
        let back = q.dequantize();
        for (block, got) in w.chunks(NF4_BLOCK).zip(back.chunks(NF4_BLOCK)) {
            let absmax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in block.iter().zip(got) {
                // Half the widest gap between levels (0.304 near ±1), plus the scale's rounding.
                assert!((a - b).abs() <= absmax * 0.16 + 1e-4, "{a} vs {b} (absmax {absmax})");
            }
        }
        let mut rows_3_to_9 = vec![0f32; 6 * cols];
        q.dequantize_rows(3, &mut rows_3_to_9);
        assert_eq!(rows_3_to_9, back[3 * cols..9 * cols]);
    }

    /// On normal weights NF4's error is about a tenth of their spread (the 4-bit level QLoRA
    /// reports), and Q8_0's well under a hundredth.
    #[test]
    fn relative_errors_on_normal_weights() {
        let (rows, cols) = (64, 256);
        let w = crate::gradcheck::randn(&[rows * cols], 5).to_vec_f64().unwrap();
        let w: Vec<f32> = w.into_iter().map(|v| v as f32 * 0.02).collect();
        let rms = |v: &[f32]| (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        for (q, bound) in
            [(QuantMatrix::nf4(&w, rows, cols).unwrap(), 0.12), (QuantMatrix::q8_0(&w, rows, cols).unwrap(), 0.01)]
        {
            let err: Vec<f32> = q.dequantize().iter().zip(&w).map(|(a, b)| a - b).collect();
            let e = rms(&err) / rms(&w);
            assert!(e < bound, "{}: relative RMS error {e}", q.format().name());
        }
    }

    #[test]
    fn ggml_matrices_dequantize_by_rows() {
        let (rows, cols) = (5, 64);
        let w = values(rows * cols);
        let q = QuantMatrix::q8_0(&w, rows, cols).unwrap();
        let all = q.dequantize();
        let mut two = vec![0f32; 2 * cols];
        q.dequantize_rows(2, &mut two);
        assert_eq!(two, all[2 * cols..4 * cols]);
        assert!(QuantMatrix::from_ggml(GgmlType::Q4_0, 2, 32, vec![0; 35]).is_err());
        assert!(QuantMatrix::nf4(&w[..rows * 32], rows, 32).is_err());
    }
}
