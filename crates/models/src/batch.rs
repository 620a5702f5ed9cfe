//! The inputs of one forward pass, and the key/value cache used while generating.

use tunesmith_engine::{DType, Tensor};

use crate::error::{ModelError, Result};

/// One batch of token sequences, `[B, T]` each.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Token ids (i64).
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding; None = all real.
    pub attention_mask: Option<Tensor>,
    /// Position of each token; None = 0..T per row (or RoBERTa's padding-aware positions).
    pub position_ids: Option<Tensor>,
    /// BERT segment (token type) ids; None = all 0.
    pub token_type_ids: Option<Tensor>,
    /// Packed sequences: tokens attend only within their segment id (block-diagonal attention).
    pub segment_ids: Option<Tensor>,
}

impl Batch {
    /// A batch of unpadded rows of equal length.
    pub fn from_ids(rows: &[Vec<i64>]) -> Result<Batch> {
        let t = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|r| r.len() != t) {
            return Err(ModelError::Invalid("Batch::from_ids needs rows of equal length; pad them first".into()));
        }
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Ok(Batch {
            input_ids: Tensor::from_vec(flat, &[rows.len(), t])?,
            attention_mask: None,
            position_ids: None,
            token_type_ids: None,
            segment_ids: None,
        })
    }

    /// Batch size and sequence length.
    pub fn dims(&self) -> (usize, usize) {
        let s = self.input_ids.shape();
        (s[0], s.get(1).copied().unwrap_or(1))
    }

    /// Checks ranks, shapes and dtypes of every field.
    pub fn validate(&self) -> Result<()> {
        let s = self.input_ids.shape();
        if s.len() != 2 {
            return Err(ModelError::Invalid(format!("input_ids must be [batch, seq], got {s:?}")));
        }
        if !matches!(self.input_ids.dtype(), DType::I64 | DType::U32) {
            return Err(ModelError::Invalid(format!(
                "input_ids must hold integer ids, got {:?}",
                self.input_ids.dtype()
            )));
        }
        for (name, t) in [
            ("attention_mask", &self.attention_mask),
            ("position_ids", &self.position_ids),
            ("token_type_ids", &self.token_type_ids),
            ("segment_ids", &self.segment_ids),
        ] {
            if let Some(t) = t {
                if t.shape() != s {
                    return Err(ModelError::Invalid(format!("{name} has shape {:?}, input_ids {s:?}", t.shape())));
                }
            }
        }
        Ok(())
    }

    /// Positions to use: given, or 0..T for each row.
    pub fn positions(&self) -> Result<Vec<i64>> {
        let (b, t) = self.dims();
        match &self.position_ids {
            Some(p) => Ok(p.to_vec_f64()?.into_iter().map(|x| x as i64).collect()),
            None => Ok((0..b).flat_map(|_| 0..t as i64).collect()),
        }
    }

    /// The attention mask as 0/1 values per token (all ones when absent).
    pub fn mask_values(&self) -> Result<Vec<i64>> {
        let (b, t) = self.dims();
        match &self.attention_mask {
            Some(m) => Ok(m.to_vec_f64()?.into_iter().map(|x| i64::from(x != 0.0)).collect()),
            None => Ok(vec![1; b * t]),
        }
    }
}

/// Cached keys and values of every layer, `[B, S, Hkv, D]`, grown as tokens are generated.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per layer: (keys, values) so far.
    pub layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `n` layers.
    pub fn new(n: usize) -> KvCache {
        KvCache { layers: vec![None; n] }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.iter().flatten().next().map_or(0, |(k, _)| k.shape()[1])
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
