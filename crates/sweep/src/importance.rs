//! Which parameters mattered: for each one, the share of the objective's variance across
//! complete trials that its value alone explains (the correlation ratio η², with numeric values
//! grouped into quantile bins). It is a first-order, main-effect estimate in the spirit of
//! fANOVA's, cheap and model-free; the shares are normalized to sum to one.

use crate::journal::{EndState, StudyState, TrialState};
use crate::space::Space;

/// One parameter's importance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Importance {
    /// The config key.
    pub key: String,
    /// η² of the objective on this parameter's bins, in [0, 1].
    pub eta_squared: f64,
    /// Its share of the sum over parameters.
    pub share: f64,
}

fn eta_squared(groups: &[Vec<f64>]) -> f64 {
    let all: Vec<f64> = groups.iter().flatten().copied().collect();
    let n = all.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean = all.iter().sum::<f64>() / n;
    let total: f64 = all.iter().map(|y| (y - mean).powi(2)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let between: f64 = groups
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| {
            let m = g.iter().sum::<f64>() / g.len() as f64;
            g.len() as f64 * (m - mean).powi(2)
        })
        .sum();
    (between / total).clamp(0.0, 1.0)
}

/// Importances of the space's parameters over the study's complete trials (empty with fewer
/// than four), most important first.
pub fn importances(space: &Space, state: &StudyState) -> Vec<Importance> {
    let done: Vec<(Vec<f64>, f64)> = state
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Ended(EndState::Complete))
        .filter_map(|t| Some((space.from_json(&t.params).ok()?, t.value.filter(|v| v.is_finite())?)))
        .collect();
    if done.len() < 4 {
        return Vec::new();
    }
    let bins = (done.len() / 3).clamp(2, 5);
    let mut out: Vec<Importance> = space
        .params
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let groups: Vec<Vec<f64>> = if p.is_categorical() {
                (0..p.choices())
                    .map(|c| done.iter().filter(|(xs, _)| xs[j].round() as usize == c).map(|d| d.1).collect())
                    .collect()
            } else {
                let mut order: Vec<usize> = (0..done.len()).collect();
                order.sort_by(|&a, &b| done[a].0[j].total_cmp(&done[b].0[j]));
                let mut g = vec![Vec::new(); bins];
                for (rank, &i) in order.iter().enumerate() {
                    g[rank * bins / done.len()].push(done[i].1);
                }
                g
            };
            Importance { key: p.key.clone(), eta_squared: eta_squared(&groups), share: 0.0 }
        })
        .collect();
    let sum: f64 = out.iter().map(|i| i.eta_squared).sum();
    for i in &mut out {
        i.share = if sum > 0.0 { i.eta_squared / sum } else { 0.0 };
    }
    out.sort_by(|a, b| b.eta_squared.total_cmp(&a.eta_squared));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{now, Event, Worker};
    use serde_json::{Map, Value as Json};

    #[test]
    fn the_parameter_that_drives_the_objective_ranks_first() {
        let t: toml::Table = toml::from_str(
            "a = { type = \"uniform\", low = 0, high = 1 }\nb = { type = \"uniform\", low = 0, high = 1 }\nc = [\"x\", \"y\"]",
        )
        .unwrap();
        let space = Space::parse(&t).unwrap();
        let mut state = StudyState::default();
        for i in 0..24 {
            let (a, b) = ((i * 7 % 24) as f64 / 24.0, (i * 5 % 24) as f64 / 24.0);
            let mut params = Map::new();
            params.insert("a".into(), Json::from(a));
            params.insert("b".into(), Json::from(b));
            params.insert("c".into(), Json::from(if i % 2 == 0 { "x" } else { "y" }));
            state.apply(Event::Start { trial: i, params, worker: Worker::current(), time: now() }).unwrap();
            let value = 10.0 * a + 0.1 * b + if i % 2 == 0 { 1.0 } else { 0.0 };
            state
                .apply(Event::End {
                    trial: i,
                    state: EndState::Complete,
                    value: Some(value),
                    seconds: 1.0,
                    steps: 1,
                    total_steps: 1,
                    metrics: Map::new(),
                    error: None,
                    time: now(),
                })
                .unwrap();
        }
        let imp = importances(&space, &state);
        assert_eq!(imp[0].key, "a");
        assert!(imp[0].share > 0.8, "{imp:?}");
        assert!((imp.iter().map(|i| i.share).sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
