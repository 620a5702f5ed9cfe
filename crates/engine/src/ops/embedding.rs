//! embedding: gather table rows by id; backward scatter-adds into the table's gradient.

use super::{expect_rank, float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct EmbeddingBackward {
    ids: Tensor,
    vocab: usize,
}

impl<'m> Graph<'m> {
    /// `ids [...]` (i64 or u32) into `table [V, d]` → `[..., d]`. Ids outside `[0, V)` are an error.
    pub fn embedding(&self, ids: &Tensor, table: &Var) -> Result<Var> {
        const OP: &str = "embedding";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[table])?;
        expect_rank(OP, "table", table.value(), 2)?;
        if !matches!(ids.dtype(), DType::I64 | DType::U32) {
            return Err(EngineError::DType { op: OP, got: ids.dtype(), expected: "i64 or u32 ids".into() });
        }
        let y = be.embedding_fwd(ids, table.value())?;
        Ok(self.record(y, &[Some(table)], || Box::new(EmbeddingBackward { ids: ids.clone(), vocab: table.shape()[0] })))
    }
}

impl BackwardOp for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("embedding", grads)?;
        let be = crate::backend::common("embedding_backward", &[&dy])?;
        let d = dy.shape().last().copied().unwrap_or(1);
        if let Some((runs, e)) = ctx.per_example_runs("embedding", 0, dy.numel() / d.max(1))? {
            let dy2 = dy.reshape(&[dy.numel() / d.max(1), d])?;
            // Each example's gradient is zero outside the rows of its own ids.
            let ids = self.ids.to_vec_f64()?;
            let mut rows: Vec<Vec<u32>> = vec![Vec::new(); e];
            for r in &runs {
                rows[r.example].extend(ids[r.start..r.end].iter().map(|&i| i as u32));
            }
            for v in &mut rows {
                v.sort_unstable();
                v.dedup();
            }
            ctx.note_row_support(0, rows);
            return Ok(vec![Some(be.segment_embedding_bwd(&dy2, &self.ids, self.vocab, &runs, e)?)]);
        }
        Ok(vec![Some(be.embedding_bwd(&dy, &self.ids, self.vocab)?)])
    }
}
