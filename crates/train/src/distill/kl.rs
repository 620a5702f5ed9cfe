//! The distillation loss on temperature-scaled logits (Hinton et al., 2015):
//! T²·KL(softmax(t/T) ‖ softmax(s/T)), summed over rows with per-row weights and divided by a
//! normalizer. Written from the engine's log-softmax, product and sum (each with its own
//! finite-difference-checked backward); its gradient with respect to s is
//! T·(softmax(s/T) − softmax(t/T))·w / normalizer.

use tunesmith_engine::{Graph, Tensor, Var};

use crate::error::{Result, TrainError};

/// The loss and its value as a KL divergence (the differentiable loss leaves out the teacher's
/// entropy, a constant).
pub struct SoftTargetLoss {
    /// Differentiable: −T²·Σ w·p·log q / normalizer.
    pub loss: Var,
    /// T²·Σ w·KL(p ‖ q) / normalizer.
    pub kl: f64,
}

/// Teacher probabilities softmax(t/T) of `teacher_logits` (rows of the last dimension), each row
/// times its weight (0 drops a row, e.g. an ignored token).
pub fn teacher_probs(teacher_logits: &Tensor, weights: Option<&[f32]>, temperature: f64) -> Result<(Vec<f64>, f64)> {
    let classes = teacher_logits.shape().last().copied().unwrap_or(1).max(1);
    let t = teacher_logits.to_vec_f64()?;
    let rows = t.len() / classes;
    if let Some(w) = weights {
        if w.len() != rows {
            return Err(TrainError::Config(format!(
                "distillation: {} row weights for {rows} rows of teacher logits",
                w.len()
            )));
        }
    }
    let mut probs = vec![0f64; t.len()];
    // Σ w·p·log p, the teacher's (negative) entropy term of the KL.
    let mut neg_entropy = 0.0;
    for r in 0..rows {
        let w = weights.map_or(1.0, |w| f64::from(w[r]));
        if w == 0.0 {
            continue;
        }
        let row = &t[r * classes..(r + 1) * classes];
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b / temperature));
        let z: f64 = row.iter().map(|&x| (x / temperature - m).exp()).sum();
        for (c, &x) in row.iter().enumerate() {
            let logp = x / temperature - m - z.ln();
            let p = logp.exp();
            probs[r * classes + c] = p * w;
            if p > 0.0 {
                neg_entropy += w * p * logp;
            }
        }
    }
    Ok((probs, neg_entropy))
}

/// T²·KL(softmax(teacher/T) ‖ softmax(student/T)) over the rows of `student` (any shape whose
/// last dimension holds the classes or the vocabulary), rows weighted by `weights`, divided by
/// `normalizer`.
pub fn soft_target_loss<'m>(
    g: &Graph<'m>,
    student: &Var,
    teacher_logits: &Tensor,
    weights: Option<&[f32]>,
    temperature: f64,
    normalizer: f64,
) -> Result<SoftTargetLoss> {
    if student.shape() != teacher_logits.shape() {
        return Err(TrainError::Config(format!(
            "distillation: student logits {:?} and teacher logits {:?} differ; the teacher must have the same labels \
             (or vocabulary) as the student",
            student.shape(),
            teacher_logits.shape()
        )));
    }
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(TrainError::Config(format!("distillation: temperature must be positive, got {temperature}")));
    }
    let (probs, neg_entropy) = teacher_probs(teacher_logits, weights, temperature)?;
    let dtype = student.value().dtype();
    let p = g.input(Tensor::from_vec(probs, student.shape())?.to_dtype(dtype)?);
    let log_q = g.log_softmax(&g.scale(student, 1.0 / temperature)?)?;
    let cross = g.sum(&g.mul(&log_q, &p)?)?;
    let factor = temperature * temperature / normalizer.max(f64::MIN_POSITIVE);
    let loss = g.scale(&cross, -factor)?;
    let kl = (neg_entropy - cross.value().scalar_value()?) * factor;
    Ok(SoftTargetLoss { loss, kl })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunesmith_engine::Grads;

    fn kl_reference(s: &[f64], t: &[f64], temp: f64) -> f64 {
        let soft = |x: &[f64]| {
            let m = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b / temp));
            let z: f64 = x.iter().map(|v| (v / temp - m).exp()).sum();
            x.iter().map(|v| (v / temp - m).exp() / z).collect::<Vec<f64>>()
        };
        let (p, q) = (soft(t), soft(s));
        p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum::<f64>() * temp * temp
    }

    #[test]
    fn value_and_gradient_match_the_closed_form() {
        let s = [0.3, -1.2, 2.0, 0.5, 0.1, -0.4];
        let t = [1.0, 0.0, -1.0, 2.5, -0.5, 0.2];
        let temp = 2.0;
        let weights = [1.0f32, 0.5];
        let g = Graph::train(0);
        let student = g.leaf(Tensor::from_vec(s.to_vec(), &[2, 3]).unwrap());
        let out =
            soft_target_loss(&g, &student, &Tensor::from_vec(t.to_vec(), &[2, 3]).unwrap(), Some(&weights), temp, 4.0)
                .unwrap();
        let want = (kl_reference(&s[..3], &t[..3], temp) + 0.5 * kl_reference(&s[3..], &t[3..], temp)) / 4.0;
        assert!((out.kl - want).abs() < 1e-9, "{} vs {want}", out.kl);
        let mut grads = Grads::new();
        g.backward(&out.loss, &mut grads).unwrap();
        let got = grads.of(&student).unwrap().to_vec_f64().unwrap();
        // Central differences of the closed-form KL.
        for i in 0..6 {
            let h = 1e-5;
            let f = |d: f64| {
                let mut x = s.to_vec();
                x[i] += d;
                (kl_reference(&x[..3], &t[..3], temp) + 0.5 * kl_reference(&x[3..], &t[3..], temp)) / 4.0
            };
            let fd = (f(h) - f(-h)) / (2.0 * h);
            assert!((got[i] - fd).abs() < 1e-7, "d/ds{i}: {} vs {fd}", got[i]);
        }
    }

    #[test]
    fn equal_logits_give_zero_and_zero_weights_drop_rows() {
        let g = Graph::train(0);
        let v = vec![0.1f64, 0.7, -0.3, 4.0];
        let student = g.input(Tensor::from_vec(v.clone(), &[2, 2]).unwrap());
        let out = soft_target_loss(&g, &student, &Tensor::from_vec(v, &[2, 2]).unwrap(), None, 1.0, 1.0).unwrap();
        assert!(out.kl.abs() < 1e-12);
        let other = Tensor::from_vec(vec![5.0f64, -5.0, 0.0, 0.0], &[2, 2]).unwrap();
        let out = soft_target_loss(&g, &student, &other, Some(&[0.0, 0.0]), 1.0, 1.0).unwrap();
        assert_eq!(out.kl, 0.0);
        assert_eq!(out.loss.value().scalar_value().unwrap(), 0.0);
    }

    #[test]
    fn shapes_must_agree() {
        let g = Graph::train(0);
        let student = g.input(Tensor::from_vec(vec![0.0f64; 4], &[2, 2]).unwrap());
        let teacher = Tensor::from_vec(vec![0.0f64; 6], &[2, 3]).unwrap();
        let e = soft_target_loss(&g, &student, &teacher, None, 1.0, 1.0).err().unwrap().to_string();
        assert!(e.contains("same labels"), "{e}");
    }
}
