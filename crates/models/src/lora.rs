//! LoRA: attach low-rank adapters to linear layers chosen by module-name patterns (PEFT's
//! `target_modules` semantics), merge them into the base weights and back exactly, and read and
//! write adapters in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`, keys
//! `base_model.model.<module>.lora_A.weight`).

use std::collections::HashSet;
use std::path::Path;

use serde_json::{json, Value};
use tunesmith_engine::rng::Rng;
use tunesmith_engine::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::layers::{Adapter, LoraAdapter};
use crate::model::{Model, Task};
use crate::weights::Checkpoint;

/// Which layers get adapters.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetModules {
    /// Module names equal to, or ending in `.` + one of, these names (PEFT's list form).
    Names(Vec<String>),
    /// A regular expression that must match the whole module name (PEFT's string form).
    Regex(String),
    /// Every linear layer except the output head (PEFT's `all-linear`).
    AllLinear,
}

impl std::fmt::Display for TargetModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetModules::Names(names) => write!(f, "{names:?}"),
            TargetModules::Regex(re) => write!(f, "the pattern {re:?}"),
            TargetModules::AllLinear => f.write_str("all-linear"),
        }
    }
}

/// Which biases train alongside the adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraBias {
    /// No bias trains.
    None,
    /// Every bias trains.
    All,
    /// Biases of adapted layers train.
    LoraOnly,
}

impl LoraBias {
    fn peft_name(self) -> &'static str {
        match self {
            LoraBias::None => "none",
            LoraBias::All => "all",
            LoraBias::LoraOnly => "lora_only",
        }
    }
}

/// LoRA hyper-parameters (PEFT's `LoraConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank.
    pub r: usize,
    /// Scale numerator.
    pub alpha: f64,
    /// Dropout on the adapter's input.
    pub dropout: f32,
    /// Layers to adapt.
    pub target_modules: TargetModules,
    /// Scale alpha/√r instead of alpha/r (rank-stabilised LoRA).
    pub use_rslora: bool,
    /// Biases that train.
    pub bias: LoraBias,
    /// Modules trained in full and saved with the adapter (e.g. a classifier head).
    pub modules_to_save: Vec<String>,
    /// Only adapt blocks with these indices (all when empty).
    pub layers_to_transform: Vec<usize>,
    /// Seed of the A-matrix initialisation.
    pub seed: u64,
}

impl LoraConfig {
    /// r, alpha and targets with PEFT's defaults for the rest.
    pub fn new(r: usize, alpha: f64, targets: TargetModules) -> LoraConfig {
        LoraConfig {
            r,
            alpha,
            dropout: 0.0,
            target_modules: targets,
            use_rslora: false,
            bias: LoraBias::None,
            modules_to_save: Vec::new(),
            layers_to_transform: Vec::new(),
            seed: 0,
        }
    }

    /// The multiplier on the low-rank path.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// What [`attach`] did.
#[derive(Debug, Clone)]
pub struct AttachReport {
    /// Module names that received adapters.
    pub adapted: Vec<String>,
    /// Trainable scalars after attaching.
    pub trainable: usize,
    /// All scalars.
    pub total: usize,
}

fn matches_module(targets: &TargetModules, module: &str, is_output_head: bool) -> Result<bool> {
    Ok(match targets {
        TargetModules::Names(names) => names.iter().any(|t| module == t || module.ends_with(&format!(".{t}"))),
        TargetModules::Regex(re) => {
            let re = regex::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| ModelError::Invalid(format!("target_modules regex '{re}': {e}")))?;
            re.is_match(module)
        }
        TargetModules::AllLinear => !is_output_head,
    })
}

fn in_module(name: &str, module: &str) -> bool {
    name.starts_with(&format!("{module}.")) || name.contains(&format!(".{module}."))
}

/// Attaches fresh adapters (A ~ U(±1/√in) as PEFT's Kaiming init, B = 0), freezes the base and
/// marks adapters, chosen biases and `modules_to_save` trainable.
pub fn attach(model: &mut Model, cfg: &LoraConfig) -> Result<AttachReport> {
    if cfg.r == 0 {
        return Err(ModelError::Invalid("LoRA rank r must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(ModelError::Invalid(format!("lora_dropout {} must be in [0, 1)", cfg.dropout)));
    }
    model.params.set_trainable(|_| true, false);
    let task = model.task();
    let mut rng = Rng::new(cfg.seed ^ 0x10ba);
    let scale = cfg.scale();
    let mut adapted = Vec::new();
    let mut available = Vec::new();
    let mut new_params: Vec<(String, Tensor)> = Vec::new();
    let mut plan: Vec<(usize, String)> = Vec::new();
    {
        let linears = model.linears();
        for (i, l) in linears.iter().enumerate() {
            let short = l.module.rsplit('.').next().unwrap_or(&l.module).to_string();
            if !available.contains(&short) {
                available.push(short);
            }
            let is_head = !l.module.contains('.')
                || l.module == "lm_head"
                || matches!(task, Task::CausalLm) && l.module.ends_with("lm_head");
            let is_classifier = l.module.starts_with("classifier") || l.module == "score";
            if is_classifier
                && cfg.modules_to_save.iter().any(|m| l.module == *m || l.module.starts_with(&format!("{m}.")))
            {
                continue;
            }
            if !matches_module(&cfg.target_modules, &l.module, is_head || is_classifier)? {
                continue;
            }
            if !cfg.layers_to_transform.is_empty() {
                match Model::layer_of(&l.module) {
                    Some(idx) if cfg.layers_to_transform.contains(&idx) => {}
                    _ => continue,
                }
            }
            if l.adapter.is_some() {
                return Err(ModelError::Invalid(format!("{} already has an adapter", l.module)));
            }
            let full_rank = l.in_features.min(l.out_features);
            if cfg.r > full_rank {
                return Err(ModelError::Invalid(format!(
                    "LoRA rank r = {} is larger than {} ({} inputs, {} outputs): a rank above {full_rank} adds \
                     parameters but no expressiveness; use r <= {full_rank}, or leave this layer out of the targets",
                    cfg.r, l.module, l.in_features, l.out_features
                )));
            }
            let bound = 1.0 / (l.in_features as f64).sqrt();
            let a: Vec<f32> =
                (0..cfg.r * l.in_features).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
            new_params.push((format!("{}.lora_A.weight", l.module), Tensor::from_vec(a, &[cfg.r, l.in_features])?));
            new_params.push((
                format!("{}.lora_B.weight", l.module),
                Tensor::zeros(&[l.out_features, cfg.r], DType::F32, Device::Cpu)?,
            ));
            plan.push((i, l.module.clone()));
        }
    }
    if plan.is_empty() {
        return Err(ModelError::Invalid(format!(
            "target_modules {} matched no linear layer; this model's layers are named: {}",
            cfg.target_modules,
            available.join(", ")
        )));
    }
    let mut ids = Vec::new();
    for (name, t) in new_params {
        ids.push(model.params.insert(name, t, true)?);
    }
    let mut linears = model.linears_mut();
    for (k, (i, module)) in plan.iter().enumerate() {
        let l = &mut linears[*i];
        l.adapter = Some(Adapter::Lora(LoraAdapter {
            a: ids[2 * k],
            b: ids[2 * k + 1],
            scale,
            dropout: cfg.dropout,
            merged_from: None,
            active: true,
        }));
        adapted.push(module.clone());
    }
    let lora_bias_ids: Vec<_> = linears.iter().filter(|l| l.adapter.is_some()).filter_map(|l| l.bias).collect();
    drop(linears);
    match cfg.bias {
        LoraBias::None => {}
        LoraBias::All => model.params.set_trainable(|n| n.ends_with(".bias"), true),
        LoraBias::LoraOnly => {
            for id in lora_bias_ids {
                model.params.get_mut(id).trainable = true;
            }
        }
    }
    for m in &cfg.modules_to_save {
        model.params.set_trainable(|n| in_module(n, m), true);
    }
    let (total, trainable) = model.params.counts();
    Ok(AttachReport { adapted, trainable, total })
}

/// Folds every adapter into its base weight (W ← W + s·B·A), keeping the original so that
/// [`unmerge`] restores it bit for bit.
pub fn merge(model: &mut Model) -> Result<usize> {
    let mut updates = Vec::new();
    for l in model.linears() {
        if let Some(Adapter::Lora(a)) = &l.adapter {
            if a.merged_from.is_some() {
                continue;
            }
            // A quantized base merges from its dequantized values and stays f32 afterwards.
            let w = l.weight_f32(&model.params)?;
            let av = model.params.get(a.a).value.to_vec::<f32>()?;
            let bv = model.params.get(a.b).value.to_vec::<f32>()?;
            let r = model.params.get(a.a).value.shape()[0];
            let (out, inp) = (l.out_features, l.in_features);
            let mut merged = w.to_vec::<f32>()?;
            for o in 0..out {
                for k in 0..r {
                    let bok = bv[o * r + k] as f64 * a.scale;
                    if bok == 0.0 {
                        continue;
                    }
                    for i in 0..inp {
                        merged[o * inp + i] = (merged[o * inp + i] as f64 + bok * av[k * inp + i] as f64) as f32;
                    }
                }
            }
            updates.push((l.module.clone(), l.weight, w, Tensor::from_vec(merged, &[out, inp])?));
        }
    }
    let n = updates.len();
    for (module, wid, original, merged) in updates {
        if model.params.get(wid).value.numel() == 0 {
            model.params.restore(wid, merged)?;
        } else {
            model.params.set_value(wid, merged)?;
        }
        for l in model.linears_mut() {
            if l.module == module {
                l.quantized = None;
                if let Some(Adapter::Lora(a)) = &mut l.adapter {
                    a.merged_from = Some(original.clone());
                }
            }
        }
    }
    Ok(n)
}

/// Restores the base weights saved by [`merge`].
pub fn unmerge(model: &mut Model) -> Result<usize> {
    let mut restores = Vec::new();
    for l in model.linears_mut() {
        if let Some(Adapter::Lora(a)) = &mut l.adapter {
            if let Some(orig) = a.merged_from.take() {
                restores.push((l.weight, orig));
            }
        }
    }
    let n = restores.len();
    for (wid, orig) in restores {
        model.params.set_value(wid, orig)?;
    }
    Ok(n)
}

/// Switches every unmerged LoRA adapter on or off, returning how many it switched. Off, the
/// model computes its base (PEFT's `disable_adapter()`): a preference run's reference pass
/// reads the same weights instead of a second copy of the model.
pub fn set_active(model: &mut Model, active: bool) -> usize {
    let mut switched = 0;
    for l in model.linears_mut() {
        if let Some(Adapter::Lora(a)) = &mut l.adapter {
            if a.merged_from.is_none() {
                a.active = active;
                switched += 1;
            }
        }
    }
    switched
}

/// Removes the adapters after merging them, leaving a plain model to save as a full checkpoint.
pub fn merge_and_unload(model: &mut Model) -> Result<usize> {
    let n = merge(model)?;
    for l in model.linears_mut() {
        l.adapter = None;
    }
    model.params.set_trainable(|_| true, true);
    Ok(n)
}

/// PEFT's prefix for adapter keys.
pub const PEFT_PREFIX: &str = "base_model.model.";

fn peft_task_type(task: Task) -> Value {
    match task {
        Task::CausalLm => json!("CAUSAL_LM"),
        Task::SequenceClassification => json!("SEQ_CLS"),
        Task::TokenClassification => json!("TOKEN_CLS"),
        Task::Embedding => json!("FEATURE_EXTRACTION"),
    }
}

/// Writes the adapter in PEFT's format: only the keys PEFT needs (lora_A/lora_B, trained biases,
/// `modules_to_save`).
pub fn save_adapter(model: &Model, cfg: &LoraConfig, dir: &Path, base_model: &str) -> Result<()> {
    let mut tensors = Vec::new();
    let mut lora_modules = Vec::new();
    for l in model.linears() {
        if let Some(Adapter::Lora(a)) = &l.adapter {
            lora_modules.push(l.module.clone());
            tensors.push((format!("{PEFT_PREFIX}{}.lora_A.weight", l.module), model.params.get(a.a).value.clone()));
            tensors.push((format!("{PEFT_PREFIX}{}.lora_B.weight", l.module), model.params.get(a.b).value.clone()));
            // PEFT wraps an adapted layer, so its bias is `<module>.base_layer.bias` there.
            if cfg.bias != LoraBias::None {
                if let Some(b) = l.bias {
                    let key = format!("{PEFT_PREFIX}{}.base_layer.bias", l.module);
                    tensors.push((key, model.params.get(b).value.clone()));
                }
            }
        }
    }
    let mut saved: HashSet<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    let adapted: HashSet<String> = lora_modules.iter().map(|m| format!("{m}.bias")).collect();
    for (_, p) in model.params.iter() {
        if adapted.contains(&p.name) {
            continue; // written above under base_layer
        }
        let keep = cfg.modules_to_save.iter().any(|m| in_module(&p.name, m))
            || (cfg.bias == LoraBias::All && p.name.ends_with(".bias") && !p.name.contains("lora_"));
        let key = format!("{PEFT_PREFIX}{}", p.name);
        if keep && !p.name.contains(".lora_") && saved.insert(key.clone()) {
            tensors.push((key, p.value.clone()));
        }
    }
    let targets = match &cfg.target_modules {
        TargetModules::Names(n) => json!(n),
        TargetModules::Regex(r) => json!(r),
        TargetModules::AllLinear => json!("all-linear"),
    };
    let config = json!({
        "peft_type": "LORA",
        "base_model_name_or_path": base_model,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": targets,
        "use_rslora": cfg.use_rslora,
        "use_dora": false,
        "bias": cfg.bias.peft_name(),
        "modules_to_save": if cfg.modules_to_save.is_empty() { Value::Null } else { json!(cfg.modules_to_save) },
        "layers_to_transform": if cfg.layers_to_transform.is_empty() { Value::Null } else { json!(cfg.layers_to_transform) },
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "task_type": peft_task_type(model.task()),
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": Value::Null,
    });
    crate::io::write_dir_atomic(dir, |tmp| {
        crate::io::write_json_atomic(&tmp.join("adapter_config.json"), &config)?;
        crate::weights::save_safetensors(
            &tmp.join("adapter_model.safetensors"),
            &tensors,
            Some([("format".into(), "pt".into())].into()),
        )?;
        let readme = format!(
            "# LoRA adapter\n\nTrained with tunesmith. Base model: `{base_model}`. Layers: {}.\n\nLoad with PEFT: \
             `PeftModel.from_pretrained(base, \"{}\")`.\n",
            lora_modules.len(),
            dir.display()
        );
        crate::io::write_atomic(&tmp.join("README.md"), readme.as_bytes())
    })
}

/// Reads `adapter_config.json` of a PEFT LoRA adapter.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json { path: path.clone(), source: e })?;
    let err = |k: &str, why: &str| ModelError::config(&path, k, why);
    match v.get("peft_type").and_then(Value::as_str) {
        Some("LORA") | None => {}
        Some(other) => return Err(err("peft_type", &format!("'{other}' adapters are not supported; only LORA"))),
    }
    if v.get("use_dora").and_then(Value::as_bool) == Some(true) {
        return Err(err("use_dora", "DoRA adapters are not supported yet"));
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if v.get(k).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            return Err(err(k, "per-layer ranks/alphas are not supported"));
        }
    }
    let r = v.get("r").and_then(Value::as_u64).ok_or_else(|| err("r", "is required"))? as usize;
    let alpha = v.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0);
    let target_modules = match v.get("target_modules") {
        Some(Value::Array(a)) => TargetModules::Names(a.iter().filter_map(Value::as_str).map(String::from).collect()),
        Some(Value::String(s)) if s == "all-linear" => TargetModules::AllLinear,
        Some(Value::String(s)) => TargetModules::Regex(s.clone()),
        _ => return Err(err("target_modules", "is required (a list of names or a regex)")),
    };
    let bias = match v.get("bias").and_then(Value::as_str).unwrap_or("none") {
        "none" => LoraBias::None,
        "all" => LoraBias::All,
        "lora_only" => LoraBias::LoraOnly,
        other => return Err(err("bias", &format!("'{other}' is not none, all or lora_only"))),
    };
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default()
    };
    let layers = match v.get("layers_to_transform") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as usize).collect(),
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as usize]).unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(LoraConfig {
        r,
        alpha,
        dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        target_modules,
        use_rslora: v.get("use_rslora").and_then(Value::as_bool).unwrap_or(false),
        bias,
        modules_to_save: list("modules_to_save"),
        layers_to_transform: layers,
        seed: 0,
    })
}

/// What [`load_adapter`] found.
#[derive(Debug, Clone)]
pub struct AdapterLoadReport {
    /// The adapter's settings.
    pub config: LoraConfig,
    /// Tensors set from the file.
    pub loaded: usize,
    /// Keys in the file that tunesmith does not know (ignored).
    pub ignored: Vec<String>,
}

/// Attaches a PEFT LoRA adapter from `dir` to `model` and loads its weights.
pub fn load_adapter(model: &mut Model, dir: &Path) -> Result<AdapterLoadReport> {
    let cfg = read_adapter_config(dir)?;
    attach(model, &cfg)?;
    let file = dir.join("adapter_model.safetensors");
    if !file.exists() {
        return Err(ModelError::format(dir, "no adapter_model.safetensors (adapter_model.bin is not supported)"));
    }
    let ck = Checkpoint::open_files(dir, &[file])?;
    let mut loaded = 0;
    let mut ignored = Vec::new();
    let names: Vec<String> = ck.names().map(String::from).collect();
    for key in names {
        let name = key.strip_prefix(PEFT_PREFIX).unwrap_or(&key);
        // PEFT may keep an adapter name ("default") inside keys written by other tools.
        let name = name
            .replace(".lora_A.default.", ".lora_A.")
            .replace(".lora_B.default.", ".lora_B.")
            .replace(".modules_to_save.default.", ".")
            // PEFT wraps adapted layers, so their own parameters live under `base_layer`.
            .replace(".base_layer.", ".");
        let id = crate::checkpoint_names::candidates(&name)
            .into_iter()
            .chain(crate::checkpoint_names::BASE_PREFIXES.iter().map(|p| format!("{p}{name}")))
            .find_map(|n| model.params.id(&n));
        match id {
            Some(id) => {
                let mut t = ck.take(&key)?;
                let want = model.params.get(id).value.shape().to_vec();
                if t.shape() != want.as_slice() && t.rank() == 2 && t.shape() == [want[1], want[0]] {
                    // GPT-2 Conv1D weights of modules_to_save are stored [in, out].
                    t = crate::checkpoint_names::transposed(&t)?;
                }
                model.params.set_value(id, t)?;
                loaded += 1;
            }
            None => ignored.push(key),
        }
    }
    Ok(AdapterLoadReport { config: cfg, loaded, ignored })
}
