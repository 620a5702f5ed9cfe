//! Retrieval metrics for embedding models: each query has exactly one relevant candidate
//! (its paired passage), ranked among all candidates by similarity, as sentence-transformers'
//! `InformationRetrievalEvaluator` scores paired data: accuracy@k (= recall@k with one relevant
//! item) and MRR@k.

use crate::error::{EvalError, Result};

/// Scores of a query set against a candidate set.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalScores {
    /// Share of queries whose relevant candidate ranks first.
    pub accuracy_at_1: f64,
    /// Share of queries whose relevant candidate is in the top 5.
    pub accuracy_at_5: f64,
    /// Mean reciprocal rank of the relevant candidate, counting only ranks ≤ 10.
    pub mrr_at_10: f64,
}

/// 1-based rank of candidate `relevant` in `scores` (higher is better). Ties are counted
/// against the relevant item (a candidate scoring equal ranks ahead of it), so a constant
/// scorer never looks good.
pub fn rank_of(scores: &[f64], relevant: usize) -> usize {
    let s = scores[relevant];
    1 + scores.iter().enumerate().filter(|&(j, &x)| j != relevant && (x >= s || x.is_nan())).count()
}

/// Scores `similarity` (row-major `[queries, candidates]`) where query `i`'s relevant
/// candidate is `relevant[i]`.
pub fn retrieval_scores(similarity: &[f64], candidates: usize, relevant: &[usize]) -> Result<RetrievalScores> {
    const M: &str = "retrieval";
    let n = relevant.len();
    if n == 0 || candidates == 0 {
        return Err(EvalError::invalid(M, "needs at least one query and one candidate"));
    }
    if similarity.len() != n * candidates {
        return Err(EvalError::invalid(
            M,
            format!("{} similarities for {n} queries × {candidates} candidates", similarity.len()),
        ));
    }
    if let Some(&r) = relevant.iter().find(|&&r| r >= candidates) {
        return Err(EvalError::invalid(M, format!("relevant candidate {r} is out of range (0..{candidates})")));
    }
    let ranks: Vec<usize> = relevant
        .iter()
        .enumerate()
        .map(|(i, &r)| rank_of(&similarity[i * candidates..(i + 1) * candidates], r))
        .collect();
    from_ranks(&ranks)
}

/// Scores from the 1-based rank of each query's relevant candidate.
pub fn from_ranks(ranks: &[usize]) -> Result<RetrievalScores> {
    let n = ranks.len();
    if n == 0 || ranks.contains(&0) {
        return Err(EvalError::invalid("retrieval", "needs at least one query, and ranks start at 1"));
    }
    let share = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n as f64;
    let mrr = ranks.iter().map(|&r| if r <= 10 { 1.0 / r as f64 } else { 0.0 }).sum::<f64>() / n as f64;
    Ok(RetrievalScores { accuracy_at_1: share(1), accuracy_at_5: share(5), mrr_at_10: mrr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_scores_by_hand() {
        // Query 0: relevant 0 ranks 1st. Query 1: relevant 1 ranks 3rd (0.9, 0.5 > 0.2).
        // Query 2: relevant 2 ties with candidate 0 and so ranks 2nd.
        let sim = [0.9, 0.1, 0.2, 0.9, 0.2, 0.5, 0.4, 0.1, 0.4];
        let s = retrieval_scores(&sim, 3, &[0, 1, 2]).unwrap();
        assert_eq!(s.accuracy_at_1, 1.0 / 3.0);
        assert_eq!(s.accuracy_at_5, 1.0);
        assert!((s.mrr_at_10 - (1.0 + 1.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        // A constant scorer ranks every relevant item last.
        assert_eq!(rank_of(&[0.0; 4], 2), 4);
    }

    #[test]
    fn rank_beyond_ten_counts_zero_in_mrr() {
        let mut sim = vec![1.0; 12];
        sim[11] = 0.0;
        let s = retrieval_scores(&sim, 12, &[11]).unwrap();
        assert_eq!((s.accuracy_at_1, s.accuracy_at_5, s.mrr_at_10), (0.0, 0.0, 0.0));
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(retrieval_scores(&[0.5; 5], 3, &[0, 1]).unwrap_err().to_string().contains("5 similarities"));
        assert!(retrieval_scores(&[0.5; 3], 3, &[3]).unwrap_err().to_string().contains("out of range"));
        assert!(retrieval_scores(&[], 3, &[]).is_err());
    }
}
