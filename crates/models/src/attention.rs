//! The attention step shared by every family: optional key/value cache growth, then the
//! engine's flash-style attention with the batch's masks.

use tunesmith_engine::ops::AttentionSpec;
use tunesmith_engine::{Graph, Tensor, Var};

use crate::error::Result;

/// Masks that apply to every layer of one forward pass.
#[derive(Debug, Clone, Default)]
pub struct AttnMasks {
    /// `[B, S]` nonzero for real keys (S includes cached positions).
    pub key_mask: Option<Tensor>,
    /// `[B, T]` packed-sequence segment ids.
    pub segments: Option<Tensor>,
}

/// One cache slot: the layer's keys and values so far.
pub type CacheSlot = Option<(Tensor, Tensor)>;

/// Attends `q [B,T,H,D]` over `k, v [B,T,Hkv,D]`, prepending the cached keys/values of this layer
/// (and storing the grown cache) when a slot is given.
pub fn attend<'m>(
    g: &Graph<'m>,
    q: &Var,
    k: Var,
    v: Var,
    slot: Option<&mut CacheSlot>,
    masks: &AttnMasks,
    spec: AttentionSpec,
) -> Result<Var> {
    let (k, v) = match slot {
        Some(slot) => {
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (g.concat(&[&g.input(pk), &k], 1)?, g.concat(&[&g.input(pv), &v], 1)?),
                None => (k, v),
            };
            *slot = Some((k.value().clone(), v.value().clone()));
            (k, v)
        }
        None => (k, v),
    };
    Ok(g.attention(q, &k, &v, masks.key_mask.as_ref(), masks.segments.as_ref(), spec)?)
}
