//! Preference metrics of a reward model or an implicit (DPO) reward: how often the chosen
//! response outscores the rejected one, and by how much.

use serde::Serialize;

use crate::error::{same_len, Result};

/// Reward accuracy and margin over preference pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PreferenceScores {
    /// Fraction of pairs with chosen > rejected (ties count as wrong).
    pub reward_accuracy: f64,
    /// Mean of chosen − rejected.
    pub mean_margin: f64,
    /// Pairs scored.
    pub pairs: usize,
}

/// Scores pairs of rewards.
pub fn preference(chosen: &[f64], rejected: &[f64]) -> Result<PreferenceScores> {
    same_len("preference", chosen.len(), rejected.len())?;
    let n = chosen.len() as f64;
    let wins = chosen.iter().zip(rejected).filter(|(c, r)| c > r).count() as f64;
    let margin = chosen.iter().zip(rejected).map(|(c, r)| c - r).sum::<f64>() / n;
    Ok(PreferenceScores { reward_accuracy: wins / n, mean_margin: margin, pairs: chosen.len() })
}
