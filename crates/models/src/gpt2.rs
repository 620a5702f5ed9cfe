//! GPT-2: learned positions, pre-LayerNorm blocks, fused q/k/v projection. Its Conv1D weights
//! are stored `[in, out]` in checkpoints; they are transposed on load and back on save.

use tunesmith_engine::ops::AttentionSpec;
use tunesmith_engine::{Graph, ParamId, ParamStore, Tensor, Var};

use crate::attention::{attend, AttnMasks, CacheSlot};
use crate::batch::KvCache;
use crate::checkpoint_names::take_param;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{LayerNorm, Linear};
use crate::weights::Checkpoint;

/// One GPT-2 block.
#[derive(Debug, Clone)]
pub struct Gpt2Block {
    /// Norm before attention.
    pub ln_1: LayerNorm,
    /// Fused q/k/v projection.
    pub c_attn: Linear,
    /// Attention output projection.
    pub attn_proj: Linear,
    /// Norm before the MLP.
    pub ln_2: LayerNorm,
    /// MLP up projection.
    pub c_fc: Linear,
    /// MLP down projection.
    pub mlp_proj: Linear,
}

/// The GPT-2 backbone.
#[derive(Debug, Clone)]
pub struct Gpt2 {
    /// Token embedding `[V, D]` (tied to the LM head).
    pub wte: ParamId,
    /// Position embedding `[P, D]`.
    pub wpe: ParamId,
    /// Blocks.
    pub blocks: Vec<Gpt2Block>,
    /// Final norm.
    pub ln_f: LayerNorm,
}

/// Buffers older GPT-2 checkpoints store that are not parameters.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

impl Gpt2 {
    /// Loads the backbone under the `transformer.` prefix.
    pub fn load(cfg: &ModelConfig, ck: &Checkpoint, store: &mut ParamStore) -> Result<Gpt2> {
        let d = cfg.hidden_size;
        let wte = take_param(ck, store, "transformer.wte.weight", &[cfg.vocab_size, d], false)?;
        let wpe = take_param(ck, store, "transformer.wpe.weight", &[cfg.max_position_embeddings, d], false)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let pre = format!("transformer.h.{i}");
            let conv = |store: &mut ParamStore, name: &str, inp, out| {
                Linear::load(ck, store, &format!("{pre}.{name}"), inp, out, true, true)
            };
            blocks.push(Gpt2Block {
                ln_1: LayerNorm::load(ck, store, &format!("{pre}.ln_1"), d, cfg.norm_eps)?,
                c_attn: conv(store, "attn.c_attn", d, 3 * d)?,
                attn_proj: conv(store, "attn.c_proj", d, d)?,
                ln_2: LayerNorm::load(ck, store, &format!("{pre}.ln_2"), d, cfg.norm_eps)?,
                c_fc: conv(store, "mlp.c_fc", d, cfg.intermediate_size)?,
                mlp_proj: conv(store, "mlp.c_proj", cfg.intermediate_size, d)?,
            });
        }
        let ln_f = LayerNorm::load(ck, store, "transformer.ln_f", d, cfg.norm_eps)?;
        Ok(Gpt2 { wte, wpe, blocks, ln_f })
    }

    /// All linear layers, in module order.
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.blocks.iter_mut().flat_map(|b| [&mut b.c_attn, &mut b.attn_proj, &mut b.c_fc, &mut b.mlp_proj]).collect()
    }

    /// Final hidden states `[B, T, D]`. Token type ids, when given, are embedded with the token
    /// embedding and added (as transformers does for GPT-2).
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
        mut cache: Option<&mut KvCache>,
        checkpoint: bool,
    ) -> Result<Var> {
        let tok = g.embedding(ids, &g.param(p, self.wte))?;
        let pos = Tensor::from_vec(positions.to_vec(), ids.shape())?;
        let pe = g.embedding(&pos, &g.param(p, self.wpe))?;
        let mut e = g.add(&tok, &pe)?;
        if let Some(tt) = token_types {
            e = g.add(&e, &g.embedding(tt, &g.param(p, self.wte))?)?;
        }
        let mut h = g.dropout(&e, cfg.hidden_dropout)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = if checkpoint && slot.is_none() {
                let masks = masks.clone();
                g.checkpoint(&[&h], move |g, ins| {
                    block.forward(g, p, cfg, &ins[0], &masks, None).map(|v| vec![v]).map_err(crate::to_engine)
                })?
                .remove(0)
            } else {
                block.forward(g, p, cfg, &h, masks, slot)?
            };
        }
        self.ln_f.forward(g, p, &h)
    }
}

impl Gpt2Block {
    /// h + drop(attn(ln_1 h)), then + drop(mlp(ln_2 ·)).
    pub fn forward<'m>(
        &self,
        g: &Graph<'m>,
        p: &ParamStore,
        cfg: &ModelConfig,
        h: &Var,
        masks: &AttnMasks,
        slot: Option<&mut CacheSlot>,
    ) -> Result<Var> {
        let s = h.shape();
        let (b, t, d) = (s[0], s[1], s[2]);
        let (nh, hd) = (cfg.num_heads, cfg.head_dim);
        let x = self.ln_1.forward(g, p, h)?;
        let qkv = self.c_attn.forward(g, p, &x)?;
        let parts = g.split(&qkv, 2, &[d, d, d])?;
        let q = g.reshape(&parts[0], &[b, t, nh, hd])?;
        let k = g.reshape(&parts[1], &[b, t, nh, hd])?;
        let v = g.reshape(&parts[2], &[b, t, nh, hd])?;
        let spec = AttentionSpec { causal: true, window: None, scale: None, dropout: cfg.attention_dropout };
        let o = attend(g, &q, k, v, slot, masks, spec)?;
        let o = self.attn_proj.forward(g, p, &g.reshape(&o, &[b, t, d])?)?;
        let h = g.add(h, &g.dropout(&o, cfg.hidden_dropout)?)?;
        let x = self.ln_2.forward(g, p, &h)?;
        let m = g.activation(&self.c_fc.forward(g, p, &x)?, cfg.hidden_act)?;
        let m = self.mlp_proj.forward(g, p, &m)?;
        Ok(g.add(&h, &g.dropout(&m, cfg.hidden_dropout)?)?)
    }
}
