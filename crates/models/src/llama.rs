//! The Llama family: Llama 2/3, TinyLlama, SmolLM, Mistral (sliding window), Qwen2/2.5 (q/k/v
//! bias), Qwen3 (q/k RMSNorm), Gemma 3 ((1 + γ) sandwich norms, scaled embeddings, sliding
//! layers with their own RoPE base, GELU-tanh MLP). Pre-norm blocks with RMSNorm, rotary
//! positions, grouped-query attention and a gated MLP.

use tunesmith_engine::ops::{Activation, AttentionSpec, RopeTables};
use tunesmith_engine::{Graph, ParamId, ParamStore, Tensor, Var};

use crate::attention::{attend, AttnMasks, CacheSlot};
use crate::batch::KvCache;
use crate::checkpoint_names::take_param;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::weights::Checkpoint;

/// One decoder block.
#[derive(Debug, Clone)]
pub struct LlamaBlock {
    /// Norm before attention.
    pub input_norm: RmsNorm,
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    /// Qwen3 per-head query norm.
    pub q_norm: Option<RmsNorm>,
    /// Qwen3 per-head key norm.
    pub k_norm: Option<RmsNorm>,
    /// Gemma: norm of the attention output before the residual add.
    pub attn_out_norm: Option<RmsNorm>,
    /// Norm before the MLP.
    pub post_norm: RmsNorm,
    /// Gemma: norm of the MLP output before the residual add.
    pub mlp_out_norm: Option<RmsNorm>,
    /// MLP gate projection.
    pub gate_proj: Linear,
    /// MLP up projection.
    pub up_proj: Linear,
    /// MLP down projection.
    pub down_proj: Linear,
    /// Sliding window of this layer.
    pub window: Option<usize>,
}

/// The Llama backbone (embeddings, blocks, final norm).
#[derive(Debug, Clone)]
pub struct Llama {
    /// Token embedding `[V, D]`.
    pub embed: ParamId,
    /// Decoder blocks.
    pub blocks: Vec<LlamaBlock>,
    /// Final norm.
    pub norm: RmsNorm,
}

impl Llama {
    /// Loads the backbone's parameters under the `model.` prefix.
    pub fn load(cfg: &ModelConfig, ck: &Checkpoint, store: &mut ParamStore) -> Result<Llama> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let embed = take_param(ck, store, "model.embed_tokens.weight", &[cfg.vocab_size, d], false)?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let pre = format!("model.layers.{i}");
            let lin = |store: &mut ParamStore, name: &str, inp, out, bias| {
                Linear::load(ck, store, &format!("{pre}.{name}"), inp, out, bias, false)
            };
            let norm = |store: &mut ParamStore, name: &str, dim| -> Result<RmsNorm> {
                Ok(RmsNorm::load(ck, store, &format!("{pre}.{name}"), dim, cfg.norm_eps)?.with_offset(cfg.norm_offset))
            };
            let input_norm = norm(store, "input_layernorm", d)?;
            let q_proj = lin(store, "self_attn.q_proj", d, cfg.num_heads * hd, cfg.qkv_bias)?;
            let k_proj = lin(store, "self_attn.k_proj", d, cfg.num_kv_heads * hd, cfg.qkv_bias)?;
            let v_proj = lin(store, "self_attn.v_proj", d, cfg.num_kv_heads * hd, cfg.qkv_bias)?;
            let o_proj = lin(store, "self_attn.o_proj", cfg.num_heads * hd, d, cfg.o_bias)?;
            let (q_norm, k_norm) = if cfg.qk_norm {
                (Some(norm(store, "self_attn.q_norm", hd)?), Some(norm(store, "self_attn.k_norm", hd)?))
            } else {
                (None, None)
            };
            let (attn_out_norm, post_norm, mlp_out_norm) = if cfg.sandwich_norms {
                (
                    Some(norm(store, "post_attention_layernorm", d)?),
                    norm(store, "pre_feedforward_layernorm", d)?,
                    Some(norm(store, "post_feedforward_layernorm", d)?),
                )
            } else {
                (None, norm(store, "post_attention_layernorm", d)?, None)
            };
            let gate_proj = lin(store, "mlp.gate_proj", d, cfg.intermediate_size, cfg.mlp_bias)?;
            let up_proj = lin(store, "mlp.up_proj", d, cfg.intermediate_size, cfg.mlp_bias)?;
            let down_proj = lin(store, "mlp.down_proj", cfg.intermediate_size, d, cfg.mlp_bias)?;
            blocks.push(LlamaBlock {
                input_norm,
                q_proj,
                k_proj,
                v_proj,
                o_proj,
                q_norm,
                k_norm,
                attn_out_norm,
                post_norm,
                mlp_out_norm,
                gate_proj,
                up_proj,
                down_proj,
                window: cfg.sliding_window.get(i).copied().flatten(),
            });
        }
        let norm = RmsNorm::load(ck, store, "model.norm", d, cfg.norm_eps)?.with_offset(cfg.norm_offset);
        Ok(Llama { embed, blocks, norm })
    }

    /// All linear layers (for attaching adapters), in module order.
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.blocks
            .iter_mut()
            .flat_map(|b| {
                [
                    &mut b.q_proj,
                    &mut b.k_proj,
                    &mut b.v_proj,
                    &mut b.o_proj,
                    &mut b.gate_proj,
                    &mut b.up_proj,
                    &mut b.down_proj,
                ]
            })
            .collect()
    }

    /// Final hidden states `[B, T, D]` for `ids [B, T]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<'m>(
        &'m self,
        g: &Graph<'m>,
        p: &'m ParamStore,
        cfg: &'m ModelConfig,
        ids: &Tensor,
        positions: &[i64],
        masks: &AttnMasks,
        mut cache: Option<&mut KvCache>,
        checkpoint: bool,
    ) -> Result<Var> {
        let mut h = g.embedding(ids, &g.param(p, self.embed))?;
        if let Some(s) = cfg.embed_scale {
            // Gemma multiplies by √d rounded to the weights' precision, as transformers does.
            h = g.scale(&h, s as f32 as f64)?;
        }
        let dtype = h.value().dtype();
        let tables =
            RopeTables::new(positions, cfg.rotary_dim(), cfg.rope_theta, &cfg.rope_scaling, dtype, h.value().device())?;
        let local_tables = match cfg.rope_local_theta {
            Some(theta) => Some(RopeTables::new(
                positions,
                cfg.rotary_dim(),
                theta,
                &tunesmith_engine::ops::RopeScaling::None,
                dtype,
                h.value().device(),
            )?),
            None => None,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let tables = match (&local_tables, block.window) {
                (Some(local), Some(_)) => local,
                _ => &tables,
            };
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = if checkpoint && slot.is_none() {
                let (tables, masks) = (tables.clone(), masks.clone());
                g.checkpoint(&[&h], move |g, ins| {
                    block.forward(g, p, cfg, &ins[0], &tables, &masks, None).map(|v| vec![v]).map_err(crate::to_engine)
                })?
                .remove(0)
            } else {
                block.forward(g, p, cfg, &h, tables, masks, slot)?
            };
        }
        self.norm.forward(g, p, &h)
    }
}

impl LlamaBlock {
    /// One block: h + attn(norm(h)), then + mlp(norm(·)).
    #[allow(clippy::too_many_arguments)]
    pub fn forward<'m>(
        &self,
        g: &Graph<'m>,
        p: &ParamStore,
        cfg: &ModelConfig,
        h: &Var,
        tables: &RopeTables,
        masks: &AttnMasks,
        slot: Option<&mut CacheSlot>,
    ) -> Result<Var> {
        let s = h.shape();
        let (b, t) = (s[0], s[1]);
        let hd = cfg.head_dim;
        let x = self.input_norm.forward(g, p, h)?;
        let q = g.reshape(&self.q_proj.forward(g, p, &x)?, &[b, t, cfg.num_heads, hd])?;
        let k = g.reshape(&self.k_proj.forward(g, p, &x)?, &[b, t, cfg.num_kv_heads, hd])?;
        let v = g.reshape(&self.v_proj.forward(g, p, &x)?, &[b, t, cfg.num_kv_heads, hd])?;
        let (q, k) = match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => (qn.forward(g, p, &q)?, kn.forward(g, p, &k)?),
            _ => (q, k),
        };
        let q = g.rope(&q, tables)?;
        let k = g.rope(&k, tables)?;
        let spec =
            AttentionSpec { causal: true, window: self.window, scale: cfg.attn_scale, dropout: cfg.attention_dropout };
        let o = attend(g, &q, k, v, slot, masks, spec)?;
        let o = g.reshape(&o, &[b, t, cfg.num_heads * hd])?;
        let mut o = self.o_proj.forward(g, p, &o)?;
        if let Some(n) = &self.attn_out_norm {
            o = n.forward(g, p, &o)?;
        }
        let h = g.add(h, &o)?;
        let x = self.post_norm.forward(g, p, &h)?;
        let gate = self.gate_proj.forward(g, p, &x)?;
        let up = self.up_proj.forward(g, p, &x)?;
        let act = if cfg.hidden_act == Activation::Silu {
            g.swiglu(&gate, &up)?
        } else {
            g.mul(&g.activation(&gate, cfg.hidden_act)?, &up)?
        };
        let mut out = self.down_proj.forward(g, p, &act)?;
        if let Some(n) = &self.mlp_out_norm {
            out = n.forward(g, p, &out)?;
        }
        Ok(g.add(&h, &out)?)
    }
}
