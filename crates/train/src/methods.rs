//! Fine-tuning methods: which parameters train, at which learning rate. Each method is one
//! function of the model and the `[method]` section; the trainer only sees the resulting
//! trainable flags and parameter groups.

use tunesmith_engine::optim::ParamGroup;
use tunesmith_models::lora::{self, LoraBias, LoraConfig, TargetModules};
use tunesmith_models::{Model, Task};

use crate::config::{parse_layer_range, MethodKind, MethodSection};
use crate::error::{Result, TrainError};

/// Parameter names of task heads (trained by every method).
pub fn is_head(name: &str) -> bool {
    ["classifier.", "score.", "pre_classifier.", "qa_outputs."].iter().any(|p| name.starts_with(p))
}

/// Parameters that never get weight decay: biases and normalization weights.
pub fn no_decay(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.ends_with(".bias") || lower.contains("norm") || lower.contains("ln_")
}

/// The LoRA configuration of a `[method]` section.
pub fn lora_config(m: &MethodSection, task: Task, seed: u64) -> LoraConfig {
    let targets = if m.lora_targets.iter().any(|t| t == "all-linear") {
        TargetModules::AllLinear
    } else {
        TargetModules::Names(m.lora_targets.clone())
    };
    let mut cfg = LoraConfig::new(m.lora_r, m.lora_alpha, targets);
    cfg.dropout = m.lora_dropout as f32;
    cfg.use_rslora = m.use_rslora;
    cfg.bias = match m.lora_bias.as_str() {
        "all" => LoraBias::All,
        "lora_only" => LoraBias::LoraOnly,
        _ => LoraBias::None,
    };
    if task == Task::SequenceClassification {
        cfg.modules_to_save = vec!["classifier".into()];
    }
    cfg.seed = seed;
    cfg
}

/// Sets the trainable flags for `method` (gradual unfreezing starts with only the head).
/// Returns the LoRA config when adapters were attached.
pub fn apply(model: &mut Model, m: &MethodSection, seed: u64) -> Result<Option<LoraConfig>> {
    let n = model.num_layers();
    match m.kind {
        MethodKind::Full => model.params.set_trainable(|_| true, true),
        MethodKind::FeatureExtraction | MethodKind::GradualUnfreeze => {
            if model.task() == Task::CausalLm {
                return Err(TrainError::Config(format!(
                    "method.kind = \"{}\" needs a task head; with task.kind = \"causal_lm\" use full, partial or lora",
                    if m.kind == MethodKind::FeatureExtraction { "feature_extraction" } else { "gradual_unfreeze" }
                )));
            }
            model.params.set_trainable(is_head, true);
            model.params.set_trainable(|name| !is_head(name), false);
        }
        MethodKind::Partial => {
            model.params.set_trainable(|_| true, true);
            if let Some(r) = &m.freeze_layers {
                let (a, b) = parse_layer_range(r).map_err(TrainError::Config)?;
                if b >= n {
                    return Err(TrainError::Config(format!(
                        "method.freeze_layers = \"{r}\" but the model has {n} blocks (0-{})",
                        n.saturating_sub(1)
                    )));
                }
                model.params.set_trainable(|name| Model::layer_of(name).is_some_and(|l| (a..=b).contains(&l)), false);
            }
            let patterns = m.freeze_patterns.clone();
            model.params.set_trainable(|name| patterns.iter().any(|p| name.contains(p.as_str())), false);
            if m.freeze_layers.is_none() && m.freeze_patterns.is_empty() {
                return Err(TrainError::Config(
                    "method.kind = \"partial\" needs method.freeze_layers or method.freeze_patterns".into(),
                ));
            }
        }
        MethodKind::Lora => {
            let cfg = lora_config(m, model.task(), seed);
            let report = lora::attach(model, &cfg)?;
            if report.adapted.is_empty() {
                return Err(TrainError::Config(format!(
                    "method.lora_targets {:?} matched no linear layer of this model",
                    m.lora_targets
                )));
            }
            return Ok(Some(cfg));
        }
    }
    if model.params.trainable_ids().is_empty() {
        return Err(TrainError::Config("the method leaves no parameter to train".into()));
    }
    Ok(None)
}

/// Gradual unfreezing: with `stage` stages done, the head plus the top `stage` blocks train
/// (and, once every block trains, the embeddings too).
pub fn unfreeze_stage(model: &mut Model, stage: usize) {
    let n = model.num_layers();
    let top = n.saturating_sub(stage);
    model.params.set_trainable(|name| is_head(name) || Model::layer_of(name).is_some_and(|l| l >= top), true);
    if stage > n {
        model.params.set_trainable(|_| true, true);
    }
}

/// The learning-rate multiplier of a parameter under layer-wise decay: the head and anything
/// above the blocks train at 1, block i of n at decay^(n − i), embeddings at decay^(n + 1).
pub fn layer_lr_factor(name: &str, n_layers: usize, decay: f64) -> f64 {
    if decay == 1.0 || is_head(name) {
        return 1.0;
    }
    match Model::layer_of(name) {
        Some(i) => decay.powi((n_layers - i.min(n_layers)) as i32),
        None if name.contains("embed") || name.contains("wte") || name.contains("wpe") => {
            decay.powi(n_layers as i32 + 1)
        }
        None => 1.0,
    }
}

/// The learning-rate multiplier LoRA+ gives a parameter: `ratio` for LoRA's B matrices, 1 for
/// everything else.
pub fn loraplus_factor(name: &str, ratio: f64) -> f64 {
    if ratio != 1.0 && name.contains(".lora_B.") {
        ratio
    } else {
        1.0
    }
}

/// Parameter groups over every parameter that trains now or may later (gradual unfreezing):
/// one group per (lr multiplier, decay or not); the multiplier combines layer-wise decay and
/// LoRA+.
pub fn param_groups(model: &Model, m: &MethodSection, lr: f64, weight_decay: f64) -> Vec<ParamGroup> {
    let n = model.num_layers();
    let mut groups: Vec<(u64, bool, ParamGroup)> = Vec::new();
    for (id, p) in model.params.iter() {
        let eligible = p.trainable || m.kind == MethodKind::GradualUnfreeze;
        if !eligible || !p.value.dtype().is_compute_float() {
            continue;
        }
        let factor = layer_lr_factor(&p.name, n, m.layer_lr_decay) * loraplus_factor(&p.name, m.loraplus_lr_ratio);
        let nd = no_decay(&p.name);
        let key = factor.to_bits();
        match groups.iter_mut().find(|(k, d, _)| *k == key && *d == nd) {
            Some((_, _, g)) => g.params.push(id),
            None => groups.push((
                key,
                nd,
                ParamGroup { params: vec![id], lr: lr * factor, weight_decay: if nd { 0.0 } else { weight_decay } },
            )),
        }
    }
    groups.into_iter().map(|(_, _, g)| g).collect()
}
