//! Plain-data descriptions of op hyper-parameters, shared by the autograd layer and every
//! backend.

/// A pointwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// GELU with the exact erf (BERT's "gelu").
    GeluErf,
    /// GELU with the tanh approximation (GPT-2's "gelu_new", "gelu_pytorch_tanh").
    GeluTanh,
    /// x·σ(x) (Llama's "silu").
    Silu,
    /// tanh (BERT's pooler).
    Tanh,
    /// max(x, 0).
    Relu,
    /// σ(x).
    Sigmoid,
}

impl Activation {
    /// Parses a Hugging Face `hidden_act` name.
    pub fn from_hf_name(name: &str) -> Option<Activation> {
        Some(match name {
            "gelu" | "gelu_python" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            _ => return None,
        })
    }
}

/// How attention masks and scales its scores (masks themselves are tensors passed beside it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Queries see only keys at or before their position (the last query aligned with the last key).
    pub causal: bool,
    /// Sliding window length (Mistral), if any.
    pub window: Option<usize>,
    /// Score multiplier; `None` means 1/√head_dim.
    pub scale: Option<f64>,
    /// Dropout probability on the attention weights (training only).
    pub dropout: f32,
}

impl Default for AttentionSpec {
    fn default() -> Self {
        AttentionSpec { causal: false, window: None, scale: None, dropout: 0.0 }
    }
}

/// LoRA hyper-parameters of one adapted linear layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraSpec {
    /// Multiplier on the low-rank path: alpha/r, or alpha/√r with rsLoRA.
    pub scale: f64,
    /// Dropout probability on the low-rank path's input (training only).
    pub dropout: f32,
}

/// Options of the fused cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropySpec {
    /// Label that contributes nothing (−100 by convention).
    pub ignore_index: i64,
    /// Label smoothing ε in [0, 1).
    pub label_smoothing: f64,
    /// Divide by this instead of the total weight of counted tokens (gradient accumulation
    /// normalises by the whole accumulated batch).
    pub normalizer: Option<f64>,
}

impl Default for CrossEntropySpec {
    fn default() -> Self {
        CrossEntropySpec { ignore_index: -100, label_smoothing: 0.0, normalizer: None }
    }
}
