//! embedding: gather rows of a table by id; the backward scatter-adds into a table-shaped
//! gradient, split by column ranges so every row is summed in token order (deterministic).

use rayon::prelude::*;

use super::gemm::SendPtr;
use crate::dtype::Real;
use crate::error::{EngineError, Result};

/// Checks every id against the vocabulary size and returns them as usize.
pub fn validate_ids(ids: &[i64], vocab: usize) -> Result<Vec<usize>> {
    ids.iter()
        .enumerate()
        .map(|(pos, &id)| {
            if id < 0 || id as usize >= vocab {
                Err(EngineError::invalid(
                    "embedding",
                    format!("id {id} at position {pos} is outside the table of {vocab} rows"),
                ))
            } else {
                Ok(id as usize)
            }
        })
        .collect()
}

/// Forward: `out[i] = table[ids[i]]`, `table [vocab, dim]`.
pub fn forward<T: Real>(ids: &[usize], table: &[T], dim: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; ids.len() * dim];
    out.par_chunks_mut(dim.max(1)).zip(ids.par_iter()).for_each(|(row, &id)| {
        row.copy_from_slice(&table[id * dim..(id + 1) * dim]);
    });
    out
}

/// Backward: `dtable[ids[i]] += dy[i]`.
pub fn backward<T: Real>(dy: &[T], ids: &[usize], vocab: usize, dim: usize) -> Vec<T> {
    let mut dtable = vec![T::ZERO; vocab * dim];
    const COLS: usize = 32;
    let ptr = SendPtr(dtable.as_mut_ptr());
    let col_blocks = dim.div_ceil(COLS);
    (0..col_blocks).into_par_iter().for_each(|cb| {
        let c0 = cb * COLS;
        let c1 = (c0 + COLS).min(dim);
        for (i, &id) in ids.iter().enumerate() {
            let src = &dy[i * dim + c0..i * dim + c1];
            // SAFETY: each worker writes only columns [c0, c1) of the rows it touches, and
            // column blocks are disjoint; `id < vocab` was validated.
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(id * dim + c0), c1 - c0) };
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    });
    dtable
}
