//! `tunesmith train RUN.toml --cv K`: K-fold cross-validation, one run per fold in
//! `<output.dir>/fold-<i>`, then one line per metric (`accuracy 0.912 ± 0.011`) and `cv.json`.

use anyhow::Result;
use serde_json::{json, Map, Value};
use tunesmith_train::{RunConfig, Trainer};

use crate::train::{bar, train_error};
use crate::Problems;

/// Runs the folds of `cfg` and prints each metric's mean ± sample standard deviation.
pub fn run(cfg: RunConfig, k: usize) -> Result<()> {
    let dir = cfg.output.dir.clone();
    let folds = tunesmith_train::cv::fold_configs(&cfg, k).map_err(train_error)?;
    let mut metrics: Vec<Map<String, Value>> = Vec::with_capacity(k);
    for (i, fold) in folds.into_iter().enumerate() {
        eprintln!("fold {}/{k}: {}", i + 1, fold.output.dir.display());
        let summary = Trainer::new(fold, false).and_then(|t| t.train(&mut bar())).map_err(train_error)?;
        let m = summary
            .final_metrics
            .ok_or_else(|| Problems(format!("fold {i} ended without an evaluation (no validation rows?)")))?;
        eprintln!(
            "fold {}/{k}: {}",
            i + 1,
            m.iter().filter_map(|(n, v)| Some(format!("{n} {:.4}", v.as_f64()?))).collect::<Vec<_>>().join(", ")
        );
        metrics.push(m);
    }
    let stats = tunesmith_train::cv::summarize(&metrics);
    for s in &stats {
        println!("{} {:.4} ± {:.4}", s.metric, s.mean, s.std);
    }
    let out = json!({"folds": k, "per_fold": metrics, "summary": stats});
    let path = dir.join("cv.json");
    std::fs::create_dir_all(&dir)?;
    tunesmith_eval::report::write_atomic(&path, serde_json::to_string_pretty(&out)?.as_bytes())?;
    println!("cross-validation: {}", path.display());
    Ok(())
}
