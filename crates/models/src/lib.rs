//! tunesmith's model zoo: Hugging Face checkpoints (Llama/Mistral/Qwen2/Qwen3, GPT-2,
//! BERT/RoBERTa/MiniLM) and llama2.c checkpoints, loaded into the engine's parameter store,
//! with task heads, LoRA, generation and HF-format saving.

mod attention;
pub mod batch;
pub mod bert;
pub mod checkpoint_names;
pub mod config;
mod contrastive;
mod error;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod hub;
pub mod io;
pub mod layers;
pub mod llama;
pub mod llama2c;
pub mod lora;
pub mod model;
pub mod quantize;
pub mod weights;

pub use batch::{Batch, KvCache};
pub use config::{Family, ModelConfig};
pub use error::{ModelError, Result};
pub use generate::{generate, Generated, GenerationConfig};
pub use model::{Head, LoadOptions, LoadReport, LossOptions, Model, ModelLoss, Targets, Task};
pub use tunesmith_data::tokenizer::{self, Tokenizer};

/// Converts a model error into an engine error (for checkpointed scopes, whose closures
/// return engine results).
pub(crate) fn to_engine(e: ModelError) -> tunesmith_engine::EngineError {
    match e {
        ModelError::Engine(e) => e,
        other => tunesmith_engine::EngineError::invalid("model", other.to_string()),
    }
}
