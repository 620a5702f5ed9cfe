//! The win rate of a policy against its reference, judged by a reward model (`tunesmith eval
//! --task preference --reward-model RM`): for each held-out prompt, a greedy completion from the
//! policy (its LoRA adapters on) and one from the reference (adapters off) are scored by the
//! reward model; the policy wins a prompt when its completion's reward is higher (a tie counts
//! half). The reward model must share the policy's tokenizer (it reads the same token ids).

use serde::Serialize;
use tunesmith_engine::Graph;
use tunesmith_models::generate::{generate, GenerationConfig};
use tunesmith_models::Model;

use crate::error::{Result, TrainError};
use crate::grpo::completion_batch;

/// What [`win_rate`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WinRate {
    /// Prompts compared.
    pub prompts: usize,
    /// Wins of the policy plus half its ties, over the prompts.
    pub win_rate: f64,
    /// Mean reward of the policy's completions.
    pub policy_reward: f64,
    /// Mean reward of the reference's completions.
    pub reference_reward: f64,
    /// Mean completion length of the policy, in tokens.
    pub policy_length: f64,
    /// Mean completion length of the reference, in tokens.
    pub reference_length: f64,
}

/// The rewards of prompt + completion sequences under `reward` (one scalar head).
pub(crate) fn score(reward: &Model, prompts: &[Vec<u32>], completions: &[Vec<u32>], pad: u32) -> Result<Vec<f64>> {
    let seqs: Vec<(&[u32], &[u32])> =
        prompts.iter().zip(completions).map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
    let (hb, _) = completion_batch(&seqs, pad);
    let batch = crate::trainer::to_batch(&hb, false, reward.config.position_offset)?;
    let out = reward.forward(&Graph::inference(), &batch, false)?;
    if out.shape() != [prompts.len(), 1] {
        return Err(TrainError::Config(format!(
            "the reward model must have one output per sequence (a reward run's final/model); it gives {:?}",
            out.shape()
        )));
    }
    Ok(out.value().to_vec_f64()?)
}

/// Compares the policy (`policy` with its adapters on) with its reference (adapters off) on
/// `prompts`, `batch_size` prompts at a time, judged by `reward`.
pub fn win_rate(
    policy: &mut Model,
    reward: &Model,
    prompts: &[Vec<u32>],
    generation: &GenerationConfig,
    batch_size: usize,
) -> Result<WinRate> {
    if reward.config.vocab_size != policy.config.vocab_size {
        return Err(TrainError::Config(format!(
            "the reward model's vocabulary ({} tokens) differs from the policy's ({}); it must share the policy's tokenizer",
            reward.config.vocab_size, policy.config.vocab_size
        )));
    }
    if prompts.is_empty() {
        return Err(TrainError::Data("no prompts to compare on".into()));
    }
    let cfg = GenerationConfig { do_sample: false, ..generation.clone() };
    let (mut wins, mut rp, mut rr, mut lp, mut lr) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for chunk in prompts.chunks(batch_size.max(1)) {
        let ours = generate(policy, chunk, &cfg, None)?.tokens;
        tunesmith_models::lora::set_active(policy, false);
        let theirs = generate(policy, chunk, &cfg, None);
        tunesmith_models::lora::set_active(policy, true);
        let theirs = theirs?.tokens;
        let (a, b) = (score(reward, chunk, &ours, cfg.pad_token_id)?, score(reward, chunk, &theirs, cfg.pad_token_id)?);
        for (x, y) in a.iter().zip(&b) {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
        rp += a.iter().sum::<f64>();
        rr += b.iter().sum::<f64>();
        lp += ours.iter().map(Vec::len).sum::<usize>();
        lr += theirs.iter().map(Vec::len).sum::<usize>();
    }
    let n = prompts.len() as f64;
    Ok(WinRate {
        prompts: prompts.len(),
        win_rate: wins / n,
        policy_reward: rp / n,
        reference_reward: rr / n,
        policy_length: lp as f64 / n,
        reference_length: lr as f64 / n,
    })
}
