//! K-fold cross-validation: K runs of one config, each validating on one fold of `data.train`
//! (stratified by class, see `tunesmith_data::prep::kfold_assignments`) and training on the
//! others, in `<output.dir>/fold-<i>`; then the mean and standard deviation of each metric.

use serde_json::{Map, Value};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};

/// The run config of each fold: `data.cv_folds = k`, `data.cv_fold = i`, output in `fold-<i>`.
pub fn fold_configs(cfg: &RunConfig, k: usize) -> Result<Vec<RunConfig>> {
    if k < 2 {
        return Err(TrainError::Config(format!("--cv {k}: cross-validation needs at least 2 folds")));
    }
    if cfg.continual.is_some() || cfg.multitask.is_some() {
        return Err(TrainError::Config(
            "--cv runs one task's folds; remove [continual] / [multitask] from the config".into(),
        ));
    }
    if cfg.data.validation.is_some() {
        return Err(TrainError::Config(
            "--cv validates on folds of data.train; remove data.validation (or train without --cv)".into(),
        ));
    }
    Ok((0..k)
        .map(|i| {
            let mut c = cfg.clone();
            c.data.cv_folds = k;
            c.data.cv_fold = i;
            c.output.dir = cfg.output.dir.join(format!("fold-{i}"));
            c
        })
        .collect())
}

/// One metric across folds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FoldStat {
    /// The metric.
    pub metric: String,
    /// Its mean over folds.
    pub mean: f64,
    /// Its sample standard deviation (n − 1) over folds.
    pub std: f64,
    /// Each fold's value.
    pub values: Vec<f64>,
}

/// The mean and sample standard deviation of every numeric metric that all folds report, in
/// the first fold's order.
pub fn summarize(folds: &[Map<String, Value>]) -> Vec<FoldStat> {
    let Some(first) = folds.first() else { return Vec::new() };
    first
        .keys()
        .filter_map(|name| {
            let values: Vec<f64> = folds.iter().map(|m| m.get(name).and_then(Value::as_f64)).collect::<Option<_>>()?;
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let std = if values.len() > 1 {
                (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            Some(FoldStat { metric: name.clone(), mean, std, values })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fold_statistics_are_the_mean_and_sample_deviation() {
        let folds: Vec<Map<String, Value>> = [0.9, 0.8, 0.85]
            .iter()
            .map(|a| json!({"accuracy": a, "loss": 1.0 - a, "note": "x"}).as_object().unwrap().clone())
            .collect();
        let s = summarize(&folds);
        assert_eq!(s.iter().map(|f| f.metric.as_str()).collect::<Vec<_>>(), ["accuracy", "loss"]);
        assert!((s[0].mean - 0.85).abs() < 1e-12);
        assert!((s[0].std - 0.05).abs() < 1e-12, "{}", s[0].std);
    }

    #[test]
    fn fold_configs_refuse_a_validation_file_and_name_each_fold() {
        let text = "[model]\npath = \"m\"\n[task]\nkind = \"classification\"\n[data]\ntrain = \"t.jsonl\"\n[output]\ndir = \"runs/x\"\n";
        let cfg = RunConfig::parse(text, "t", &[]).unwrap();
        let folds = fold_configs(&cfg, 5).unwrap();
        assert_eq!(folds.len(), 5);
        assert_eq!((folds[3].data.cv_fold, folds[3].data.cv_folds), (3, 5));
        assert!(folds[3].output.dir.ends_with("fold-3"));
        assert!(fold_configs(&cfg, 1).is_err());
        let bad_op = RunConfig::parse(text, "t", &["data.augment_ops=[\"sr\", \"xx\"]".into()]).unwrap_err();
        assert!(bad_op.to_string().contains("data.augment_ops"), "{bad_op}");
        let with_val = RunConfig::parse(text, "t", &["data.validation=\"v.jsonl\"".into()]).unwrap();
        assert!(fold_configs(&with_val, 5).unwrap_err().to_string().contains("data.validation"));
    }
}
