//! `tunesmith eval --suite robustness`: perturbations, OOD detection, subgroup metrics and
//! calibration of a classifier on a dataset; prints a summary and writes `robustness.json` and
//! `robustness.html`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use tunesmith_data::augment::perturb::PerturbKind;
use tunesmith_train::robustness::{self, RobustnessOptions};
use tunesmith_train::Trainer;

use crate::data::load_records as load;
use crate::train::train_error;
use crate::BadInput;

/// The default perturbations and rates.
const DEFAULT_PERTURB: &str = "typo=0.05,swap=0.1,case=0.1,whitespace=0.1,synonym=0.2,truncate=0.3";

/// Options of `--suite robustness`.
#[derive(Args, Debug, Default)]
pub struct RobustnessArgs {
    /// Out-of-distribution texts (any dataset): scored for OOD detection.
    #[arg(long)]
    ood: Option<String>,
    /// A column of the data naming each row's group, for subgroup and fairness metrics.
    #[arg(long)]
    group_column: Option<String>,
    /// The favourable class for the fairness differences (default: the second label).
    #[arg(long)]
    positive: Option<String>,
    /// Labeled validation data to fit the temperature on (default: the evaluated data).
    #[arg(long)]
    calibration_data: Option<String>,
    /// Perturbations as kind=rate, comma-separated (kinds: typo, swap, case, whitespace,
    /// synonym, truncate) [default: typo=0.05,swap=0.1,case=0.1,whitespace=0.1,synonym=0.2,truncate=0.3].
    #[arg(long, value_delimiter = ',')]
    perturb: Vec<String>,
    /// The perturbations' seed.
    #[arg(long, default_value_t = 0)]
    perturb_seed: u64,
}

impl RobustnessArgs {
    /// Whether any suite option was given.
    pub fn is_set(&self) -> bool {
        self.ood.is_some()
            || self.group_column.is_some()
            || self.positive.is_some()
            || self.calibration_data.is_some()
            || !self.perturb.is_empty()
    }
}

fn parse_perturb(specs: &[String]) -> Result<Vec<(PerturbKind, f64)>> {
    let defaults: Vec<String> = DEFAULT_PERTURB.split(',').map(String::from).collect();
    let specs = if specs.is_empty() { &defaults[..] } else { specs };
    specs
        .iter()
        .map(|s| {
            let bad = || {
                BadInput(format!(
                    "--perturb {s}: write kind=rate with kind one of typo, swap, case, whitespace, synonym, truncate and a rate in (0, 1]"
                ))
            };
            let (k, r) = s.split_once('=').ok_or_else(bad)?;
            let kind = PerturbKind::parse(k.trim()).ok_or_else(bad)?;
            let rate: f64 = r.trim().parse().map_err(|_| bad())?;
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(bad().into());
            }
            Ok((kind, rate))
        })
        .collect()
}

/// Runs the suite with `trainer`'s model on the data at `data`.
pub fn run(trainer: &mut Trainer, data: &str, a: &RobustnessArgs, out: Option<&Path>) -> Result<()> {
    let opts = RobustnessOptions {
        perturbations: parse_perturb(&a.perturb)?,
        seed: a.perturb_seed,
        ood: a.ood.as_deref().map(load).transpose()?,
        group_column: a.group_column.clone(),
        positive: a.positive.clone(),
        calibration: a.calibration_data.as_deref().map(load).transpose()?,
    };
    let records = load(data)?;
    let r = robustness::run(trainer, &records, &opts).map_err(train_error)?;
    println!("clean accuracy {:.4} on {} rows", r.accuracy, r.rows);
    for p in &r.perturbations {
        println!(
            "{:<10} rate {:<5} accuracy {:.4} ({:+.4}), flip rate {:.4}",
            p.kind, p.rate, p.accuracy, -p.accuracy_drop, p.flip_rate
        );
    }
    if let Some(o) = &r.ood {
        println!("OOD AUROC: max-softmax {:.4}, energy {:.4}", o.auroc_max_softmax, o.auroc_energy);
    }
    if let Some(f) = &r.fairness {
        println!(
            "subgroups ({}): accuracy gap {:.4}, demographic parity difference {:.4}, equalized odds difference {:.4}",
            f.groups.len(),
            f.accuracy_gap,
            f.demographic_parity_difference,
            f.equalized_odds_difference
        );
    }
    let c = &r.calibration;
    println!(
        "calibration: temperature {:.4} (fitted on the {} rows); validation ECE {:.4} -> {:.4}; evaluated ECE {:.4} -> {:.4}",
        c.temperature.temperature,
        c.fitted_on,
        c.validation_before.ece,
        c.validation_after.ece,
        c.evaluation_ece_before,
        c.evaluation_ece_after
    );
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        tunesmith_eval::report::write_atomic(
            &dir.join("robustness.json"),
            serde_json::to_string_pretty(&r)?.as_bytes(),
        )?;
        tunesmith_eval::report::write_atomic(&dir.join("robustness.html"), robustness::html::render(&r).as_bytes())?;
        println!("report: {}", dir.join("robustness.html").display());
    }
    Ok(())
}
