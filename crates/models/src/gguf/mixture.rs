//! The per-tensor types of a Q4_K_M file, as llama.cpp's quantizer chooses them
//! (`llama_tensor_get_type` for `LLAMA_FTYPE_MOSTLY_Q4_K_M`): Q4_K by default; Q6_K for the
//! output head (or the token embedding when the head is tied to it), and for `attn_v` and
//! `ffn_down` in the layers `use_more_bits` picks; and, for a matrix whose rows are not whole
//! 256-weight K blocks, the fallback llama.cpp uses (Q4_K → Q5_0, Q6_K → Q8_0). Vectors
//! (norms, biases) stay F32.

use tunesmith_engine::quant::{GgmlType, QK_K};

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// layer between.
pub fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    let eighth = n_layers / 8;
    match layer.checked_sub(eighth) {
        None => true,
        Some(k) => layer >= 7 * n_layers / 8 || k % 3 == 2,
    }
}

/// The layer of a `blk.N.` tensor name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type of tensor `name` (GGUF naming) with `cols` weights per row, in a Q4_K_M file of a
/// model with `n_layers` blocks; `has_output` says whether the file has its own `output.weight`.
pub fn q4_k_m_type(name: &str, dims: usize, cols: usize, n_layers: usize, has_output: bool) -> GgmlType {
    if dims < 2 {
        return GgmlType::F32;
    }
    let head = name == "output.weight" || (!has_output && name == "token_embd.weight");
    let more_bits = |name: &str| layer_of(name).is_some_and(|l| use_more_bits(l, n_layers));
    let wanted =
        if head || ((name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight")) && more_bits(name)) {
            GgmlType::Q6K
        } else {
            GgmlType::Q4K
        };
    if cols.is_multiple_of(QK_K) {
        return wanted;
    }
    match wanted {
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => GgmlType::Q5_0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_270m_layers_match_its_published_q4_k_m_file() {
        // gemma-3-270m-q4_k_m.gguf (18 layers, width 640, ffn 2048, tied head) holds: attn_q/k,
        // ffn_gate/up Q5_0 (640 is not whole K blocks); attn_v Q8_0 in 9 layers and Q5_0 in 9;
        // ffn_down Q6_K in 9 and Q4_K in 9; attn_output Q4_K (1024 columns); token_embd Q8_0.
        let n = 18;
        let count = |tensor: &str, cols: usize, ty: GgmlType| {
            (0..n).filter(|l| q4_k_m_type(&format!("blk.{l}.{tensor}.weight"), 2, cols, n, false) == ty).count()
        };
        assert_eq!(count("attn_q", 640, GgmlType::Q5_0), 18);
        assert_eq!(count("ffn_up", 640, GgmlType::Q5_0), 18);
        assert_eq!(count("attn_v", 640, GgmlType::Q8_0), 9);
        assert_eq!(count("attn_v", 640, GgmlType::Q5_0), 9);
        assert_eq!(count("ffn_down", 2048, GgmlType::Q6K), 9);
        assert_eq!(count("ffn_down", 2048, GgmlType::Q4K), 9);
        assert_eq!(count("attn_output", 1024, GgmlType::Q4K), 18);
        assert_eq!(q4_k_m_type("token_embd.weight", 2, 640, n, false), GgmlType::Q8_0);
        assert_eq!(q4_k_m_type("token_embd.weight", 2, 512, n, true), GgmlType::Q4K);
        assert_eq!(q4_k_m_type("output.weight", 2, 512, n, true), GgmlType::Q6K);
        assert_eq!(q4_k_m_type("blk.0.attn_norm.weight", 1, 640, n, false), GgmlType::F32);
    }

    #[test]
    fn more_bits_layers() {
        let picked: Vec<usize> = (0..18).filter(|&l| use_more_bits(l, 18)).collect();
        assert_eq!(picked, [0, 1, 4, 7, 10, 13, 15, 16, 17]);
        let picked: Vec<usize> = (0..8).filter(|&l| use_more_bits(l, 8)).collect();
        assert_eq!(picked, [0, 3, 6, 7]);
    }
}
