//! Running sums of a set of pairs' losses and rewards, reported under the metric names of the TRL
//! trainer that computes the same thing: DPOTrainer's for policy losses, RewardTrainer's for a
//! reward model.

use serde_json::{json, Map, Value};

use super::loss::{PairLogps, PairLoss};

/// Sums over pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct PairStats {
    /// Pairs seen.
    pub pairs: usize,
    /// Σ loss (over pairs, as [`PairLoss::sum`]).
    pub loss: f64,
    /// Σ chosen reward.
    pub chosen_rewards: f64,
    /// Σ rejected reward.
    pub rejected_rewards: f64,
    /// Pairs whose chosen reward beats the rejected one (ties count as losses).
    pub wins: usize,
    /// Σ log π(chosen) (policy losses).
    pub chosen_logps: f64,
    /// Σ log π(rejected) (policy losses).
    pub rejected_logps: f64,
    /// The smallest reward seen.
    pub min_reward: f64,
    /// The largest reward seen.
    pub max_reward: f64,
}

impl Default for PairStats {
    fn default() -> Self {
        PairStats {
            pairs: 0,
            loss: 0.0,
            chosen_rewards: 0.0,
            rejected_rewards: 0.0,
            wins: 0,
            chosen_logps: 0.0,
            rejected_logps: 0.0,
            min_reward: f64::INFINITY,
            max_reward: f64::NEG_INFINITY,
        }
    }
}

impl PairStats {
    /// Adds a batch of pairs and their loss.
    pub fn add(&mut self, pairs: &[PairLogps], out: &PairLoss) {
        self.pairs += pairs.len();
        self.loss += out.sum;
        self.chosen_rewards += out.chosen_rewards.iter().sum::<f64>();
        self.rejected_rewards += out.rejected_rewards.iter().sum::<f64>();
        self.wins += out.chosen_rewards.iter().zip(&out.rejected_rewards).filter(|(c, r)| c > r).count();
        self.chosen_logps += pairs.iter().map(|p| p.chosen).sum::<f64>();
        self.rejected_logps += pairs.iter().map(|p| p.rejected).sum::<f64>();
        for &r in out.chosen_rewards.iter().chain(&out.rejected_rewards) {
            self.min_reward = self.min_reward.min(r);
            self.max_reward = self.max_reward.max(r);
        }
    }

    /// Merges another set's sums.
    pub fn merge(&mut self, o: &PairStats) {
        self.pairs += o.pairs;
        self.loss += o.loss;
        self.chosen_rewards += o.chosen_rewards;
        self.rejected_rewards += o.rejected_rewards;
        self.wins += o.wins;
        self.chosen_logps += o.chosen_logps;
        self.rejected_logps += o.rejected_logps;
        self.min_reward = self.min_reward.min(o.min_reward);
        self.max_reward = self.max_reward.max(o.max_reward);
    }

    /// The means under DPOTrainer's names (`rewards/chosen`, `rewards/accuracies`, ...) and `loss`.
    pub fn metrics(&self) -> Map<String, Value> {
        let n = self.pairs.max(1) as f64;
        let mut m = Map::new();
        m.insert("loss".into(), json!(self.loss / n));
        m.insert("rewards/chosen".into(), json!(self.chosen_rewards / n));
        m.insert("rewards/rejected".into(), json!(self.rejected_rewards / n));
        m.insert("rewards/margins".into(), json!((self.chosen_rewards - self.rejected_rewards) / n));
        m.insert("rewards/accuracies".into(), json!(self.wins as f64 / n));
        m.insert("logps/chosen".into(), json!(self.chosen_logps / n));
        m.insert("logps/rejected".into(), json!(self.rejected_logps / n));
        m
    }

    /// The means under RewardTrainer's names: `accuracy`, `margin`, `mean_reward`,
    /// `min_reward`, `max_reward`, and `loss`.
    pub fn reward_metrics(&self) -> Map<String, Value> {
        let n = self.pairs.max(1) as f64;
        let mut m = Map::new();
        m.insert("loss".into(), json!(self.loss / n));
        m.insert("accuracy".into(), json!(self.wins as f64 / n));
        m.insert("margin".into(), json!((self.chosen_rewards - self.rejected_rewards) / n));
        m.insert("mean_reward".into(), json!((self.chosen_rewards + self.rejected_rewards) / (2.0 * n)));
        if self.pairs > 0 {
            m.insert("min_reward".into(), json!(self.min_reward));
            m.insert("max_reward".into(), json!(self.max_reward));
        }
        m
    }
}
