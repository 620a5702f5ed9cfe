//! The search space: a distribution per config key (`[space]` of a sweep file).
//!
//! Samplers work in an internal coordinate per parameter: the value itself (uniform), its
//! logarithm (log-uniform, log int), the integer as a float (int), or the index of a choice
//! (categorical). [`Param::to_json`] and [`Param::from_json`] convert to the config value the
//! trial runs with and back (the journal stores config values, so it stays readable).

use serde_json::Value as Json;

use crate::error::{Result, SweepError};

/// The distribution of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// A float drawn uniformly from `[low, high]`.
    Uniform {
        /// Lowest value.
        low: f64,
        /// Highest value.
        high: f64,
    },
    /// A float whose logarithm is uniform on `[ln low, ln high]` (learning rates).
    LogUniform {
        /// Lowest value (> 0).
        low: f64,
        /// Highest value.
        high: f64,
    },
    /// An integer in `[low, high]`, uniform or (with `log`) log-uniform.
    Int {
        /// Lowest value.
        low: i64,
        /// Highest value.
        high: i64,
        /// Log scale (low ≥ 1).
        log: bool,
    },
    /// One of a list of values (numbers, strings, booleans or arrays).
    Categorical(Vec<Json>),
}

/// One searched config key.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The run-config key, such as `train.lr`.
    pub key: String,
    /// Its distribution.
    pub dist: Distribution,
    /// Values a grid search visits (categorical: all of them).
    pub grid: Vec<Json>,
}

/// Every searched key, sorted by key.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    /// The parameters.
    pub params: Vec<Param>,
}

fn num(t: &toml::Table, key: &str, field: &str) -> Result<Option<f64>> {
    match t.get(field) {
        None => Ok(None),
        Some(toml::Value::Float(f)) => Ok(Some(*f)),
        Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
        Some(v) => Err(SweepError::Config(format!("[space] `{key}`: `{field}` must be a number, not {v}"))),
    }
}

/// A TOML value as JSON (what the journal stores).
pub fn toml_to_json(v: &toml::Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

/// A JSON config value written as TOML, for a `key=value` override.
pub fn json_to_toml_text(v: &Json) -> String {
    match v {
        Json::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap_or(0.0)),
        other => toml::Value::try_from(other).map(|t| t.to_string()).unwrap_or_else(|_| other.to_string()),
    }
}

impl Param {
    /// Parses one `[space]` entry, such as `{ type = "log_uniform", low = 1e-5, high = 1e-3 }`.
    pub fn parse(key: &str, spec: &toml::Value) -> Result<Param> {
        let bad = |why: String| SweepError::Config(format!("[space] `{key}`: {why}"));
        let t = match spec {
            toml::Value::Table(t) => t,
            toml::Value::Array(a) => {
                // A bare list is shorthand for a categorical parameter.
                let mut t = toml::Table::new();
                t.insert("type".into(), toml::Value::String("categorical".into()));
                t.insert("values".into(), toml::Value::Array(a.clone()));
                return Param::parse(key, &toml::Value::Table(t));
            }
            other => {
                return Err(bad(format!(
                    "write a table such as {{ type = \"uniform\", low = 0, high = 1 }}, not {other}"
                )))
            }
        };
        for field in t.keys() {
            if !["type", "low", "high", "values", "log", "grid"].contains(&field.as_str()) {
                return Err(bad(format!("unknown field `{field}` (fields: type, low, high, values, log, grid)")));
            }
        }
        let kind = t.get("type").and_then(|v| v.as_str()).ok_or_else(|| {
            bad("`type` is missing: use \"uniform\", \"log_uniform\", \"int\" or \"categorical\"".into())
        })?;
        let range = || -> Result<(f64, f64)> {
            let low = num(t, key, "low")?.ok_or_else(|| bad("`low` is missing".into()))?;
            let high = num(t, key, "high")?.ok_or_else(|| bad("`high` is missing".into()))?;
            if !(low.is_finite() && high.is_finite() && low < high) {
                return Err(bad(format!("needs low < high, got low = {low}, high = {high}")));
            }
            Ok((low, high))
        };
        let log = t.get("log").and_then(|v| v.as_bool()).unwrap_or(false);
        let dist = match kind {
            "uniform" | "float" if !log => {
                let (low, high) = range()?;
                Distribution::Uniform { low, high }
            }
            "log_uniform" | "loguniform" | "uniform" | "float" => {
                let (low, high) = range()?;
                if low <= 0.0 {
                    return Err(bad(format!("a log-uniform range needs low > 0, got {low}")));
                }
                Distribution::LogUniform { low, high }
            }
            "int" => {
                let (low, high) = range()?;
                if low.fract() != 0.0 || high.fract() != 0.0 {
                    return Err(bad(format!("an int range needs whole numbers, got {low}..{high}")));
                }
                if log && low < 1.0 {
                    return Err(bad(format!("a log int range needs low ≥ 1, got {low}")));
                }
                Distribution::Int { low: low as i64, high: high as i64, log }
            }
            "categorical" | "choice" => {
                let values = t
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or_else(|| bad("a categorical parameter needs `values = [...]`".into()))?;
                if values.is_empty() {
                    return Err(bad("`values` is empty".into()));
                }
                let values: Vec<Json> = values.iter().map(toml_to_json).collect();
                for (i, v) in values.iter().enumerate() {
                    if values[..i].contains(v) {
                        return Err(bad(format!("the value {v} is listed twice")));
                    }
                }
                Distribution::Categorical(values)
            }
            other => {
                return Err(bad(format!(
                    "unknown type \"{other}\": use \"uniform\", \"log_uniform\", \"int\" or \"categorical\""
                )))
            }
        };
        let grid = match (&dist, t.get("grid")) {
            (Distribution::Categorical(v), None) => v.clone(),
            (Distribution::Categorical(_), Some(_)) => {
                return Err(bad("a categorical parameter's grid is its `values`; remove `grid`".into()))
            }
            (_, None) => Vec::new(),
            (_, Some(toml::Value::Array(a))) => a.iter().map(toml_to_json).collect(),
            (_, Some(toml::Value::Integer(n))) if *n >= 2 => evenly_spaced(&dist, *n as usize),
            (_, Some(other)) => {
                return Err(bad(format!("`grid` is a list of values or a number of points ≥ 2, not {other}")))
            }
        };
        let p = Param { key: key.to_string(), dist, grid };
        for v in &p.grid {
            p.from_json(v).map_err(|_| bad(format!("the grid value {v} is outside the range")))?;
        }
        Ok(p)
    }

    /// The internal coordinate range `[low, high]` (categorical: `[0, choices − 1]`).
    pub fn bounds(&self) -> (f64, f64) {
        match &self.dist {
            Distribution::Uniform { low, high } => (*low, *high),
            Distribution::LogUniform { low, high } => (low.ln(), high.ln()),
            Distribution::Int { low, high, log: false } => (*low as f64 - 0.5, *high as f64 + 0.5),
            Distribution::Int { low, high, log: true } => {
                ((*low as f64 - 0.5).max(0.5).ln(), (*high as f64 + 0.5).ln())
            }
            Distribution::Categorical(v) => (0.0, (v.len() - 1) as f64),
        }
    }

    /// Whether the parameter is categorical.
    pub fn is_categorical(&self) -> bool {
        matches!(self.dist, Distribution::Categorical(_))
    }

    /// The number of choices of a categorical parameter (0 otherwise).
    pub fn choices(&self) -> usize {
        match &self.dist {
            Distribution::Categorical(v) => v.len(),
            _ => 0,
        }
    }

    /// The config value at internal coordinate `x` (rounded and clamped into the range).
    pub fn to_json(&self, x: f64) -> Json {
        match &self.dist {
            Distribution::Uniform { low, high } => json_f64(x.clamp(*low, *high)),
            Distribution::LogUniform { low, high } => json_f64(x.exp().clamp(*low, *high)),
            Distribution::Int { low, high, log } => {
                let v = if *log { x.exp() } else { x };
                Json::from((v.round() as i64).clamp(*low, *high))
            }
            Distribution::Categorical(v) => v[(x.round().max(0.0) as usize).min(v.len() - 1)].clone(),
        }
    }

    /// The internal coordinate of a config value; an error when it lies outside the space.
    pub fn from_json(&self, v: &Json) -> std::result::Result<f64, String> {
        let outside = || format!("`{}` = {v} is outside its search space", self.key);
        match &self.dist {
            Distribution::Categorical(values) => {
                values.iter().position(|c| c == v).map(|i| i as f64).ok_or_else(outside)
            }
            dist => {
                let x = v.as_f64().ok_or_else(outside)?;
                let inside = match dist {
                    Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                        (*low..=*high).contains(&x)
                    }
                    Distribution::Int { low, high, .. } => {
                        x.fract() == 0.0 && (*low as f64..=*high as f64).contains(&x)
                    }
                    Distribution::Categorical(_) => false,
                };
                if !inside {
                    return Err(outside());
                }
                Ok(match dist {
                    Distribution::LogUniform { .. } | Distribution::Int { log: true, .. } => x.ln(),
                    _ => x,
                })
            }
        }
    }
}

fn json_f64(x: f64) -> Json {
    serde_json::Number::from_f64(x).map(Json::Number).unwrap_or(Json::Null)
}

/// `n` grid points spread evenly over a range (in log space for log ranges).
fn evenly_spaced(dist: &Distribution, n: usize) -> Vec<Json> {
    let at = |i: usize| i as f64 / (n - 1) as f64;
    match dist {
        Distribution::Uniform { low, high } => {
            (0..n).map(|i| json_f64((low + (high - low) * at(i)).clamp(*low, *high))).collect()
        }
        Distribution::LogUniform { low, high } => {
            (0..n).map(|i| json_f64((low.ln() + (high.ln() - low.ln()) * at(i)).exp().clamp(*low, *high))).collect()
        }
        Distribution::Int { low, high, log } => {
            let mut v: Vec<i64> = (0..n)
                .map(|i| {
                    let x = if *log {
                        ((*low as f64).ln() + ((*high as f64).ln() - (*low as f64).ln()) * at(i)).exp()
                    } else {
                        *low as f64 + (high - low) as f64 * at(i)
                    };
                    x.round() as i64
                })
                .collect();
            v.dedup();
            v.into_iter().map(Json::from).collect()
        }
        Distribution::Categorical(v) => v.clone(),
    }
}

impl Space {
    /// Parses `[space]`: one entry per config key.
    pub fn parse(table: &toml::Table) -> Result<Space> {
        if table.is_empty() {
            return Err(SweepError::Config(
                "[space] is empty: add a key, such as \"train.lr\" = { type = \"log_uniform\", low = 1e-5, high = 1e-3 }"
                    .into(),
            ));
        }
        let params = table.iter().map(|(k, v)| Param::parse(k, v)).collect::<Result<Vec<_>>>()?;
        Ok(Space { params })
    }

    /// The number of grid points (the product of the grids), or an error naming a parameter
    /// without one.
    pub fn grid_size(&self) -> Result<usize> {
        let mut n = 1usize;
        for p in &self.params {
            if p.grid.is_empty() {
                return Err(SweepError::Config(format!(
                    "[space] `{}`: a grid search needs its points; add `grid = [...]` or `grid = N` (evenly spaced)",
                    p.key
                )));
            }
            n = n.saturating_mul(p.grid.len());
        }
        Ok(n)
    }

    /// Config values of internal coordinates, by key.
    pub fn to_json(&self, xs: &[f64]) -> serde_json::Map<String, Json> {
        self.params.iter().zip(xs).map(|(p, &x)| (p.key.clone(), p.to_json(x))).collect()
    }

    /// Internal coordinates of config values, by key (an error names a missing or outside key).
    pub fn from_json(&self, values: &serde_json::Map<String, Json>) -> std::result::Result<Vec<f64>, String> {
        self.params
            .iter()
            .map(|p| p.from_json(values.get(&p.key).ok_or_else(|| format!("`{}` has no value", p.key))?))
            .collect()
    }

    /// `key=value` overrides of config values.
    pub fn overrides(values: &serde_json::Map<String, Json>) -> Vec<String> {
        values.iter().map(|(k, v)| format!("{k}={}", json_to_toml_text(v))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> Result<Space> {
        Space::parse(&toml::from_str::<toml::Table>(text).unwrap())
    }

    #[test]
    fn every_type_parses_and_round_trips_through_config_values() {
        let s = space(
            r#"
"train.lr" = { type = "log_uniform", low = 1e-5, high = 1e-3 }
"train.warmup_ratio" = { type = "uniform", low = 0, high = 0.2 }
"method.lora_r" = [4, 8, 16]
"train.batch_size" = { type = "int", low = 8, high = 64, log = true }
"#,
        )
        .unwrap();
        assert_eq!(s.params.len(), 4);
        let xs: Vec<f64> = s.params.iter().map(|p| (p.bounds().0 + p.bounds().1) / 2.0).collect();
        let values = s.to_json(&xs);
        assert!((values["train.lr"].as_f64().unwrap() - 1e-4).abs() < 1e-12);
        assert_eq!(values["method.lora_r"], Json::from(8));
        let back = s.from_json(&values).unwrap();
        assert_eq!(s.to_json(&back), values);
        let o = Space::overrides(&values);
        assert!(o.contains(&"method.lora_r=8".to_string()), "{o:?}");
        let lr = o.iter().find_map(|x| x.strip_prefix("train.lr=")).unwrap();
        assert!((lr.parse::<f64>().unwrap() - 1e-4).abs() < 1e-12, "{o:?}");
    }

    #[test]
    fn integers_round_and_stay_in_range() {
        let s = space(r#""train.epochs" = { type = "int", low = 1, high = 3 }"#).unwrap();
        let p = &s.params[0];
        assert_eq!(p.to_json(0.5), Json::from(1));
        assert_eq!(p.to_json(3.49), Json::from(3));
        assert_eq!(p.to_json(9.0), Json::from(3));
        assert!(p.from_json(&Json::from(4)).is_err());
    }

    #[test]
    fn bad_entries_name_the_key_and_the_fix() {
        let e = |t: &str| space(t).unwrap_err().to_string();
        assert!(e(r#""train.lr" = { type = "log_uniform", low = 0, high = 1 }"#).contains("low > 0"));
        assert!(e(r#""train.lr" = { type = "uniform", low = 1, high = 1 }"#).contains("low < high"));
        assert!(e(r#""train.lr" = { type = "normal", low = 1, high = 2 }"#).contains("unknown type"));
        assert!(e(r#""train.lr" = { type = "uniform", low = 1, hi = 2 }"#).contains("unknown field `hi`"));
        assert!(e(r#""method.lora_r" = { type = "categorical", values = [] }"#).contains("empty"));
        assert!(e(r#""method.lora_r" = [4, 4]"#).contains("twice"));
        assert!(e(r#""train.lr" = { type = "uniform", low = 0, high = 1, grid = [2.0] }"#).contains("outside"));
        assert!(e("").contains("[space] is empty"));
    }

    #[test]
    fn grids_come_from_lists_or_counts() {
        let s = space(
            r#"
"train.lr" = { type = "log_uniform", low = 1e-5, high = 1e-3, grid = 3 }
"method.lora_r" = [4, 8]
"#,
        )
        .unwrap();
        assert_eq!(s.grid_size().unwrap(), 6);
        let lr_param = s.params.iter().find(|p| p.key == "train.lr").unwrap();
        let lr: Vec<f64> = lr_param.grid.iter().map(|v| v.as_f64().unwrap()).collect();
        assert!((lr[1] - 1e-4).abs() < 1e-12, "{lr:?}");
        let no_grid = space(r#""train.lr" = { type = "uniform", low = 0, high = 1 }"#).unwrap();
        assert!(no_grid.grid_size().unwrap_err().to_string().contains("grid"));
    }
}
