//! Parameter names. Inside tunesmith every parameter has the name transformers gives it in the
//! task model class (`model.layers.0...` for Llama*For*, `transformer.h.0...` for GPT-2,
//! `bert.encoder...` for BERT). Checkpoints saved from the bare base class lack that prefix;
//! loading accepts both spellings.

use tunesmith_engine::{ParamId, ParamStore, Tensor};

use crate::error::{ModelError, Result};
use crate::weights::Checkpoint;

/// Base-model prefixes that bare-backbone checkpoints omit.
pub const BASE_PREFIXES: [&str; 4] = ["model.", "transformer.", "bert.", "roberta."];

/// The names a canonical parameter may have in a checkpoint, in order of preference.
pub fn candidates(canonical: &str) -> Vec<String> {
    let mut v = vec![canonical.to_string()];
    for p in BASE_PREFIXES {
        if let Some(rest) = canonical.strip_prefix(p) {
            v.push(rest.to_string());
        }
    }
    v
}

/// Finds which spelling of `canonical` (or of its aliases) the checkpoint uses.
pub fn find(ck: &Checkpoint, canonical: &str, aliases: &[String]) -> Option<String> {
    std::iter::once(canonical).chain(aliases.iter().map(String::as_str)).flat_map(candidates).find(|n| ck.contains(n))
}

fn transpose2(t: &Tensor) -> Result<Tensor> {
    let s = t.shape();
    let (r, c) = (s[0], s[1]);
    let v = t.to_vec::<f32>()?;
    let mut out = vec![0.0f32; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    Ok(Tensor::from_vec(out, &[c, r])?)
}

/// Takes a tensor under any spelling of `canonical` and stores it under `canonical`.
/// `shape` is the shape in the file; with `transpose` a 2-D tensor is stored transposed.
pub fn take_param(
    ck: &Checkpoint,
    store: &mut ParamStore,
    canonical: &str,
    shape: &[usize],
    transpose: bool,
) -> Result<ParamId> {
    take_param_inner(ck, store, canonical, &[], shape, transpose)
}

/// Like [`take_param`], also accepting older alias names (LayerNorm `gamma`/`beta`).
pub fn take_param_any(
    ck: &Checkpoint,
    store: &mut ParamStore,
    canonical: &str,
    aliases: &[String],
    shape: &[usize],
) -> Result<ParamId> {
    take_param_inner(ck, store, canonical, aliases, shape, false)
}

fn take_param_inner(
    ck: &Checkpoint,
    store: &mut ParamStore,
    canonical: &str,
    aliases: &[String],
    shape: &[usize],
    transpose: bool,
) -> Result<ParamId> {
    let name = find(ck, canonical, aliases)
        .ok_or_else(|| ModelError::MissingTensors { path: ck.root().to_path_buf(), names: format!("'{canonical}'") })?;
    let t = ck.take_shaped(&name, shape)?;
    let t = if transpose { transpose2(&t)? } else { t };
    Ok(store.insert(canonical, t, true)?)
}

/// Transposes a 2-D f32 tensor (GPT-2 Conv1D weights on save).
pub fn transposed(t: &Tensor) -> Result<Tensor> {
    transpose2(t)
}
