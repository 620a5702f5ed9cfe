//! Language-modelling metrics accumulated over a whole evaluation set: the loss is weighted by
//! tokens across all batches, never an average of per-batch means.

use serde::Serialize;

/// Running sums of a language-model evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LmAccumulator {
    /// Σ of per-token negative log-likelihoods (nats).
    pub loss_sum: f64,
    /// Tokens scored.
    pub tokens: u64,
    /// Tokens whose argmax prediction was the target.
    pub correct: u64,
}

/// The language-modelling scores of an evaluation set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LmScores {
    /// Mean per-token loss (nats).
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Fraction of tokens predicted exactly.
    pub token_accuracy: f64,
    /// Tokens scored.
    pub tokens: u64,
}

impl LmAccumulator {
    /// Adds a batch given its summed loss, token count and correct-token count.
    pub fn add(&mut self, loss_sum: f64, tokens: u64, correct: u64) {
        self.loss_sum += loss_sum;
        self.tokens += tokens;
        self.correct += correct;
    }

    /// Adds a batch given its mean loss over `tokens` tokens.
    pub fn add_mean(&mut self, mean_loss: f64, tokens: u64, correct: u64) {
        self.add(mean_loss * tokens as f64, tokens, correct);
    }

    /// Adds another accumulator's sums.
    pub fn merge(&mut self, other: &LmAccumulator) {
        self.add(other.loss_sum, other.tokens, other.correct);
    }

    /// The scores so far (None before any token).
    pub fn scores(&self) -> Option<LmScores> {
        if self.tokens == 0 {
            return None;
        }
        let loss = self.loss_sum / self.tokens as f64;
        Some(LmScores {
            loss,
            perplexity: loss.exp(),
            token_accuracy: self.correct as f64 / self.tokens as f64,
            tokens: self.tokens,
        })
    }
}
