//! BERT-style encoders (BERT, RoBERTa, MiniLM): word + absolute position + token type
//! embeddings, post-LayerNorm blocks with bidirectional attention, and the optional pooler.

use tunesmith_engine::ops::AttentionSpec;
use tunesmith_engine::{Graph, ParamId, ParamStore, Tensor, Var};

use crate::attention::{attend, AttnMasks};
use crate::checkpoint_names::{find, take_param};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{LayerNorm, Linear};
use crate::weights::Checkpoint;

/// One encoder block.
#[derive(Debug, Clone)]
pub struct BertBlock {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Attention output projection.
    pub attn_out: Linear,
    /// Norm after the attention residual.
    pub attn_norm: LayerNorm,
    /// MLP up projection.
    pub intermediate: Linear,
    /// MLP down projection.
    pub output: Linear,
    /// Norm after the MLP residual.
    pub out_norm: LayerNorm,
}

/// The encoder backbone.
#[derive(Debug, Clone)]
pub struct Bert {
    /// `bert.` or `roberta.`.
    pub prefix: String,
    /// Word embedding `[V, D]`.
    pub word: ParamId,
    /// Position embedding `[P, D]`.
    pub position: ParamId,
    /// Token type embedding `[types, D]`.
    pub token_type: ParamId,
    /// Embedding norm.
    pub emb_norm: LayerNorm,
    /// Blocks.
    pub blocks: Vec<BertBlock>,
    /// Pooler (dense + tanh on the first token), when the checkpoint has one.
    pub pooler: Option<Linear>,
}

/// Buffers encoder checkpoints store that are not parameters.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("embeddings.position_ids") || name.ends_with("embeddings.token_type_ids")
}

impl Bert {
    /// Loads the encoder under `bert.` (or `roberta.` for RoBERTa models).
    pub fn load(cfg: &ModelConfig, ck: &Checkpoint, store: &mut ParamStore) -> Result<Bert> {
        let prefix = if matches!(cfg.model_type.as_str(), "roberta" | "xlm-roberta") { "roberta." } else { "bert." };
        let d = cfg.hidden_size;
        let e = format!("{prefix}embeddings");
        let word = take_param(ck, store, &format!("{e}.word_embeddings.weight"), &[cfg.vocab_size, d], false)?;
        let position = take_param(
            ck,
            store,
            &format!("{e}.position_embeddings.weight"),
            &[cfg.max_position_embeddings, d],
            false,
        )?;
        let token_type =
            take_param(ck, store, &format!("{e}.token_type_embeddings.weight"), &[cfg.type_vocab_size, d], false)?;
        let emb_norm = LayerNorm::load(ck, store, &format!("{e}.LayerNorm"), d, cfg.norm_eps)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let pre = format!("{prefix}encoder.layer.{i}");
            let lin = |store: &mut ParamStore, name: &str, inp, out| {
                Linear::load(ck, store, &format!("{pre}.{name}"), inp, out, true, false)
            };
            blocks.push(BertBlock {
                query: lin(store, "attention.self.query", d, d)?,
                key: lin(store, "attention.self.key", d, d)?,
                value: lin(store, "attention.self.value", d, d)?,
                attn_out: lin(store, "attention.output.dense", d, d)?,
                attn_norm: LayerNorm::load(ck, store, &format!("{pre}.attention.output.LayerNorm"), d, cfg.norm_eps)?,
                intermediate: lin(store, "intermediate.dense", d, cfg.intermediate_size)?,
                output: lin(store, "output.dense", cfg.intermediate_size, d)?,
                out_norm: LayerNorm::load(ck, store, &format!("{pre}.output.LayerNorm"), d, cfg.norm_eps)?,
            });
        }
        let pooler_name = format!("{prefix}pooler.dense");
        let pooler = if find(ck, &format!("{pooler_name}.weight"), &[]).is_some() {
            Some(Linear::load(ck, store, &pooler_name, d, d, true, false)?)
        } else {
            None
        };
        Ok(Bert { prefix: prefix.to_string(), word, position, token_type, emb_norm, blocks, pooler })
    }

    /// All linear layers, in module order (pooler last).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v: Vec<&mut Linear> = self
            .blocks
            .iter_mut()
            .flat_map(|b| [&mut b.query, &mut b.key, &mut b.value, &mut b.attn_out, &mut b.intermediate, &mut b.output])
            .collect();
        v.extend(self.pooler.as_mut());
        v
    }

    /// Position ids: 0..T, or RoBERTa's padding-aware ids (padding_idx + running count of
    /// real tokens).
    pub fn positions(cfg: &ModelConfig, ids: &[i64], b: usize, t: usize) -> Vec<i64> {
        if cfg.position_offset == 0 {
            return (0..b).flat_map(|_| 0..t as i64).collect();
        }
        let pad = cfg.pad_token_id.map_or(1, |p| p as i64);
        let mut out = vec![pad; b * t];
        for r in 0..b {
            let mut count = 0i64;
            for c in 0..t {
                if ids[r * t + c] != pad {
                    count += 1;
                    out[r * t + c] = count + pad;
                }
            }
        }
        out
    }

    /// Final hidden states `[B, T, D]`; with `first_token_only`, `[B, 1, D]`: the last block
    /// computes only the first token's output (all a first-token classifier reads), attending
    /// over every token as usual, which skips most of that block's work. Unpacked batches only.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<'m>(
        &'m self,
        g: &Graph<'m>,
        p: &'m ParamStore,
        cfg: &'m ModelConfig,
        ids: &Tensor,
        positions: &[i64],
        token_types: Option<&Tensor>,
        masks: &AttnMasks,
        checkpoint: bool,
        first_token_only: bool,
    ) -> Result<Var> {
        if first_token_only && masks.segments.is_some() {
            return Err(crate::error::ModelError::Invalid(
                "first-token-only encoding needs one sequence per row, not packed segments".into(),
            ));
        }
        let shape = ids.shape().to_vec();
        let word = g.embedding(ids, &g.param(p, self.word))?;
        let pos = Tensor::from_vec(positions.to_vec(), &shape)?;
        let pos = g.embedding(&pos, &g.param(p, self.position))?;
        let types = match token_types {
            Some(t) => t.clone(),
            None => Tensor::from_vec(vec![0i64; ids.numel()], &shape)?,
        };
        let types = g.embedding(&types, &g.param(p, self.token_type))?;
        let e = g.add(&g.add(&word, &pos)?, &types)?;
        let mut h = g.dropout(&self.emb_norm.forward(g, p, &e)?, cfg.hidden_dropout)?;
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            let first_only = first_token_only && i == last;
            h = if checkpoint {
                let masks = masks.clone();
                g.checkpoint(&[&h], move |g, ins| {
                    block.forward(g, p, cfg, &ins[0], &masks, first_only).map(|v| vec![v]).map_err(crate::to_engine)
                })?
                .remove(0)
            } else {
                block.forward(g, p, cfg, &h, masks, first_only)?
            };
        }
        Ok(h)
    }
}

impl BertBlock {
    /// LN(h + drop(attn(h))), then LN(· + drop(mlp(·))). With `first_only`, only the first
    /// token's output `[B, 1, D]` is computed (its query still attends over every key).
    pub fn forward<'m>(
        &self,
        g: &Graph<'m>,
        p: &ParamStore,
        cfg: &ModelConfig,
        h: &Var,
        masks: &AttnMasks,
        first_only: bool,
    ) -> Result<Var> {
        let s = h.shape();
        let (b, t, d) = (s[0], s[1], s[2]);
        let (nh, hd) = (cfg.num_heads, cfg.head_dim);
        let k = g.reshape(&self.key.forward(g, p, h)?, &[b, t, nh, hd])?;
        let v = g.reshape(&self.value.forward(g, p, h)?, &[b, t, nh, hd])?;
        let (h, t) = if first_only { (g.narrow(h, 1, 0, 1)?, 1) } else { (h.clone(), t) };
        let h = &h;
        let q = g.reshape(&self.query.forward(g, p, h)?, &[b, t, nh, hd])?;
        let spec = AttentionSpec { causal: false, window: None, scale: None, dropout: cfg.attention_dropout };
        let o = attend(g, &q, k, v, None, masks, spec)?;
        let o = self.attn_out.forward(g, p, &g.reshape(&o, &[b, t, d])?)?;
        let h = self.attn_norm.forward(g, p, &g.add(h, &g.dropout(&o, cfg.hidden_dropout)?)?)?;
        let m = g.activation(&self.intermediate.forward(g, p, &h)?, cfg.hidden_act)?;
        let m = self.output.forward(g, p, &m)?;
        self.out_norm.forward(g, p, &g.add(&h, &g.dropout(&m, cfg.hidden_dropout)?)?)
    }
}
