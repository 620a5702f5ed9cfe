//! Turning the `[data]` section into encoded training and validation examples: loading,
//! splitting, label maps, chat templates and tokenization, with every rejected row counted.

use std::path::{Path, PathBuf};

use tunesmith_data::augment::eda::{augment_records, EdaOp};
use tunesmith_data::encode::{EncodeOptions, Encoded, Encoder, TrainOn, Truncation};
use tunesmith_data::example::{Example, Label, Record};
use tunesmith_data::prep::{class_strata, kfold_assignments, split, SplitFractions};
use tunesmith_data::schema::Schema;
use tunesmith_data::template;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_data::{Dataset, LoadOptions};

use crate::config::{RunConfig, TaskKind};
use crate::error::{Result, TrainError};

/// Encoded data ready for the loader.
pub struct Prepared {
    /// Training examples.
    pub train: Vec<Encoded>,
    /// Validation examples (possibly none).
    pub validation: Vec<Encoded>,
    /// The validation records, for per-example predictions in the report.
    pub validation_records: Vec<Record>,
    /// Class names by id (classification).
    pub labels: Vec<String>,
    /// The data files read (for the manifest's hashes).
    pub files: Vec<PathBuf>,
    /// Rows rejected while reading or encoding, with reasons (already reported).
    pub rejected: Vec<String>,
    /// Training rows added by EDA augmentation (`data.augment_ratio`).
    pub augmented: usize,
}

fn load(reference: &str, schema: &str) -> Result<Dataset> {
    let mut opts = LoadOptions::default();
    if schema != "auto" {
        opts.schema =
            Some(schema.parse::<Schema>().map_err(|e| TrainError::Config(format!("data.schema = \"{schema}\": {e}")))?);
    }
    Dataset::load(reference, &opts).map_err(|e| match e {
        tunesmith_data::DataError::Schema(why) => {
            TrainError::Data(format!("{reference}: {why} (in a run config: data.schema)"))
        }
        other => TrainError::Dataset(other),
    })
}

fn check_task_fits(ds: &Dataset, task: TaskKind, what: &str) -> Result<()> {
    let fits = |r: &Record| {
        matches!(
            (&r.example, task),
            (Example::Labeled { label: Label::Class(_), .. }, TaskKind::Classification)
                | (Example::Labeled { label: Label::Value(_), .. }, TaskKind::Regression)
                | (Example::Chat { .. } | Example::Text(_), TaskKind::CausalLm)
                | (Example::Chat { .. }, TaskKind::Grpo | TaskKind::Ppo)
                | (Example::Pair { .. }, TaskKind::Embedding)
                | (Example::Tagged { .. }, TaskKind::TokenClassification)
                | (Example::Preference { .. }, TaskKind::Preference | TaskKind::Reward)
                | (Example::Unpaired { .. }, TaskKind::Preference)
        )
    };
    if let Some(r) = ds.records.iter().find(|r| !fits(r)) {
        return Err(TrainError::Data(format!(
            "{}: a {} row does not fit task.kind = \"{}\" ({what} data has schema \"{}\"); set data.schema or task.kind",
            r.loc,
            r.example.kind(),
            task.name(),
            ds.schema.name()
        )));
    }
    Ok(())
}

/// Loads, splits and encodes the data of `cfg` with `tokenizer` (model folder `model_dir`).
pub fn prepare(cfg: &RunConfig, tokenizer: &Tokenizer, model_dir: &Path) -> Result<Prepared> {
    let d = &cfg.data;
    let train_ds = load(&d.train, &d.schema)?;
    let mut rejected: Vec<String> = train_ds.rejected.iter().map(|e| e.to_string()).collect();
    if train_ds.records.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no usable rows ({} rejected{}); run `tunesmith data validate {}` to see why",
            d.train,
            train_ds.rejected.len(),
            train_ds.rejected.first().map(|e| format!(", the first: {e}")).unwrap_or_default(),
            d.train
        )));
    }
    check_task_fits(&train_ds, cfg.task.kind, "training")?;
    let mut files = train_ds.files.clone();
    let (mut train_records, val_records) = match &d.validation {
        None if d.cv_folds > 1 => {
            let strata = class_strata(&train_ds.records);
            let folds = kfold_assignments(train_ds.records.len(), d.cv_folds, cfg.train.seed, strata.as_deref())
                .map_err(|e| TrainError::Data(format!("{}: {e}", d.train)))?;
            let (mut train, mut validation) = (Vec::new(), Vec::new());
            for (r, f) in train_ds.records.iter().zip(folds) {
                if f == d.cv_fold { &mut validation } else { &mut train }.push(r.clone());
            }
            (train, validation)
        }
        Some(v) => {
            let ds = load(v, &d.schema)?;
            check_task_fits(&ds, cfg.task.kind, "validation")?;
            rejected.extend(ds.rejected.iter().map(|e| e.to_string()));
            files.extend(ds.files.clone());
            (train_ds.records.clone(), ds.records)
        }
        None if d.validation_split > 0.0 => {
            let strata = class_strata(&train_ds.records);
            let s = split(
                train_ds.records.clone(),
                SplitFractions { validation: d.validation_split, test: 0.0 },
                cfg.train.seed,
                strata.as_deref(),
            )?;
            (s.train, s.validation)
        }
        None => (train_ds.records.clone(), Vec::new()),
    };
    if d.max_train_rows > 0 && train_records.len() > d.max_train_rows {
        let mut rng = tunesmith_data::batch::SplitMix64::new(cfg.train.seed);
        rng.shuffle(&mut train_records);
        train_records.truncate(d.max_train_rows);
    }
    let augmented = augment(cfg, &mut train_records);
    let labels: Vec<String> = match (&cfg.task.labels, cfg.task.kind) {
        (Some(l), _) => l.clone(),
        (None, TaskKind::Classification | TaskKind::TokenClassification) => train_ds.labels.clone(),
        _ => Vec::new(),
    };
    if matches!(cfg.task.kind, TaskKind::Classification | TaskKind::TokenClassification) {
        if labels.len() < 2 {
            return Err(TrainError::Data(format!(
                "{}: {} needs at least 2 classes, found {:?}",
                d.train,
                cfg.task.kind.name(),
                labels
            )));
        }
        for r in train_records.iter().chain(&val_records) {
            let names: &[String] = match &r.example {
                Example::Labeled { label: Label::Class(c), .. } => std::slice::from_ref(c),
                Example::Tagged { tags, .. } => tags,
                _ => &[],
            };
            if let Some(c) = names.iter().find(|c| !labels.contains(c)) {
                return Err(TrainError::Data(format!(
                    "{}: label \"{c}\" is not in the label map {labels:?}; add it to task.labels or fix the row",
                    r.loc
                )));
            }
        }
    }
    let tmpl = if matches!(
        cfg.task.kind,
        TaskKind::CausalLm | TaskKind::Preference | TaskKind::Reward | TaskKind::Grpo | TaskKind::Ppo
    ) {
        let spec = (d.template != "model").then_some(d.template.as_str());
        template::resolve(spec, Some(model_dir))?
    } else {
        None
    };
    let opts = EncodeOptions {
        max_length: Some(d.max_length),
        truncation: match d.truncation.as_str() {
            "left" => Truncation::Left,
            "drop" => Truncation::Drop,
            "right" => Truncation::Right,
            other => {
                return Err(TrainError::Config(format!(
                    "data.truncation = \"{other}\": use \"right\", \"left\" or \"drop\""
                )))
            }
        },
        train_on: match d.train_on.as_str() {
            "assistant" => TrainOn::Assistant,
            "last_assistant" => TrainOn::LastAssistant,
            "all" => TrainOn::All,
            other => {
                return Err(TrainError::Config(format!(
                    "data.train_on = \"{other}\": use \"assistant\", \"last_assistant\" or \"all\""
                )))
            }
        },
        ..EncodeOptions::default()
    };
    let encoder = Encoder::new(tokenizer, tmpl.as_ref(), &labels, opts)?;
    let (train, errors, _) = encoder.encode_all(&train_records);
    rejected.extend(errors.iter().map(|e| e.to_string()));
    let (validation, verrors, _) = encoder.encode_all(&val_records);
    rejected.extend(verrors.iter().map(|e| e.to_string()));
    if train.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no example survived tokenization ({} rejected); the first: {}",
            d.train,
            errors.len(),
            errors.first().map(|e| e.to_string()).unwrap_or_default()
        )));
    }
    let kept: Vec<Record> = val_records.into_iter().filter(|r| validation.iter().any(|e| e.loc == r.loc)).collect();
    Ok(Prepared { train, validation, validation_records: kept, labels, files, rejected, augmented })
}

/// Adds `data.augment_ratio` × n EDA copies of training rows (rows taken in a seeded order,
/// cycling), returning how many were added.
fn augment(cfg: &RunConfig, records: &mut Vec<Record>) -> usize {
    let d = &cfg.data;
    if d.augment_ratio <= 0.0 || records.is_empty() {
        return 0;
    }
    let ops: Vec<EdaOp> = d.augment_ops.iter().filter_map(|o| EdaOp::parse(o)).collect();
    let wanted = (d.augment_ratio * records.len() as f64).round() as usize;
    let mut order: Vec<usize> = (0..records.len()).collect();
    tunesmith_data::batch::SplitMix64::new(cfg.train.seed ^ 0xA06).shuffle(&mut order);
    let rows: Vec<usize> = order.iter().cycle().take(wanted).copied().collect();
    let (new, _) = augment_records(records, &rows, &ops, d.augment_alpha, 1, cfg.train.seed);
    let added = new.len();
    records.extend(new);
    added
}
