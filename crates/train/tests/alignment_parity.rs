//! Preference losses against TRL (fixtures from scripts/make_alignment_fixtures.py): on a fixed
//! batch of three pairs through the tiny Llama parity checkpoint with a random LoRA adapter,
//! the loss, TRL's reward metrics and every LoRA gradient equal DPOTrainer's (the reference: the
//! adapter switched off), padded and padding-free; SimPO and ORPO equal CPOTrainer's and
//! ORPOTrainer's loss functions on fixed log-probs; a reward model's loss, metrics and gradients
//! equal RewardTrainer's, with and without a margin and reward centering; GRPO's advantages,
//! loss and LoRA gradients equal GRPOTrainer's on a fixed group for each aggregation, with and
//! without the KL penalty and with clipped ratios; KTO's loss, metrics (its KL estimate
//! included) and LoRA gradients equal KTOTrainer's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tunesmith_data::batch::{Loader, LoaderOptions};
use tunesmith_data::encode::{Encoded, Sequence, Target, IGNORE};
use tunesmith_data::error::Loc;
use tunesmith_engine::{Grads, Graph};
use tunesmith_models::{lora, LoadOptions, Model, Task};
use tunesmith_testkit::max_rel_diff;
use tunesmith_train::grpo::loss::{advantages, AdvantageKind, GrpoParams};
use tunesmith_train::grpo::{completion_batch, policy_step, reference_logps, GrpoStats, RefPolicy, Rollout};
use tunesmith_train::preference::kto::{Kto, KtoParams};
use tunesmith_train::preference::loss::{pair_loss, LossParams, PairLogps, PreferenceLoss};
use tunesmith_train::preference::reward::RewardParams;
use tunesmith_train::preference::{PairObjective, Preference, Reference};

/// The committed fixtures, or a fresh set (`TUNESMITH_ALIGNMENT_FIXTURES`, as
/// scripts/check_alignment_live.sh writes it).
fn fixtures() -> PathBuf {
    match std::env::var_os("TUNESMITH_ALIGNMENT_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alignment"),
    }
}

fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("trl.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// prompt + completion, trained on the completion only.
fn sequence(prompt: &[u32], completion: &[u32]) -> Sequence {
    let input_ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let labels = prompt.iter().map(|_| IGNORE).chain(completion.iter().map(|&t| t as i32)).collect();
    Sequence { input_ids, labels, token_type_ids: Vec::new() }
}

fn pairs(f: &Value) -> Vec<Encoded> {
    let encoded = f["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let prompt = ids(&p["prompt_ids"]);
            Encoded {
                sequence: sequence(&prompt, &ids(&p["chosen_ids"])),
                rejected: Some(sequence(&prompt, &ids(&p["rejected_ids"]))),
                others: Vec::new(),
                target: Target::None,
                truncated: false,
                loc: Loc { file: Arc::from(Path::new("pairs.jsonl")), line: i + 1 },
            }
        })
        .collect();
    tunesmith_train::preference::as_loader_examples(encoded).unwrap()
}

/// Backpropagates `loss` and checks each named parameter's gradient against TRL's (`want`: name →
/// flat values) within 1e-5 of its largest entry; returns the gradients.
fn assert_grads_match<'m>(
    model: &'m Model,
    g: &Graph<'m>,
    loss: &tunesmith_engine::Var,
    want: &Value,
    what: &str,
) -> Grads {
    let mut grads = Grads::new();
    g.backward(loss, &mut grads).unwrap();
    for (name, want) in want.as_object().unwrap() {
        let id = model.params.id(name).unwrap_or_else(|| panic!("no parameter {name}"));
        let got = grads.get(id).unwrap_or_else(|| panic!("{what}: no gradient for {name}"));
        let diff = max_rel_diff(&got.to_vec_f64().unwrap(), &floats(want));
        assert!(diff < 1e-5, "{what}: {name} gradient differs from TRL's by {diff:e} (relative to its max)");
    }
    grads
}

#[test]
fn dpo_trainer_losses_metrics_and_lora_gradients_match_trl() {
    let f = fixture();
    let base =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(f["model"].as_str().unwrap().replace("crates/", ""));
    let mut model = Model::load(&base, &LoadOptions::new(Task::CausalLm)).unwrap().0;
    lora::load_adapter(&mut model, &fixtures().join("adapter")).unwrap();
    let examples = pairs(&f);
    let n = examples.len();
    for case in f["dpo_trainer"].as_array().unwrap() {
        let loss: PreferenceLoss = case["loss_type"].as_str().unwrap().parse().unwrap();
        let beta = case["beta"].as_f64().unwrap();
        for padding_free in [false, true] {
            let objective = Preference {
                objective: PairObjective::Policy(LossParams { loss, beta, gamma: 0.0, label_smoothing: 0.0 }),
                reference: Reference::AdaptersOff,
                packed: padding_free,
            };
            let opts = LoaderOptions { batch_size: n, shuffle: false, padding_free, ..LoaderOptions::default() };
            let loader = Loader::new(examples.clone(), opts).unwrap();
            let hb = loader.collate(&(0..n).collect::<Vec<_>>());
            let both = Preference::pair_batch(&loader, &hb);
            let reference = objective.reference_logps(&mut model, &both, true).unwrap();
            let g = Graph::train(0);
            let step = objective.step(&model, &g, &both, &reference, n as f64, false).unwrap();
            let what = format!("{loss} beta {beta} padding_free {padding_free}");
            let got = step.loss.value().scalar_value().unwrap();
            let want = case["loss"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: loss {got} vs TRL {want}");
            let metrics = step.stats.metrics();
            for (name, want) in case["metrics"].as_object().unwrap() {
                let (got, want) = (metrics[name].as_f64().unwrap(), want.as_f64().unwrap());
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: {name} {got} vs TRL {want}");
            }
            let grads = assert_grads_match(&model, &g, &step.loss, &case["grads"], &what);
            let want = case["grads"].as_object().unwrap().len();
            assert_eq!(grads.params().count(), want, "{what}: gradients for parameters TRL has none for");
        }
    }
}

#[test]
fn simpo_and_orpo_equal_trl_loss_functions() {
    let f = fixture();
    for case in f["functions"].as_array().unwrap() {
        let loss: PreferenceLoss = case["loss"].as_str().unwrap().parse().unwrap();
        let p = LossParams {
            loss,
            beta: case["beta"].as_f64().unwrap(),
            gamma: case["gamma"].as_f64().unwrap(),
            label_smoothing: case["label_smoothing"].as_f64().unwrap(),
        };
        let (c, r) = (floats(&case["chosen_mean_logps"]), floats(&case["rejected_mean_logps"]));
        // TRL's functions take token means; one token per completion makes ours see the same.
        let pairs: Vec<PairLogps> = c
            .iter()
            .zip(&r)
            .map(|(&chosen, &rejected)| PairLogps {
                chosen,
                rejected,
                chosen_tokens: 1,
                rejected_tokens: 1,
                ..PairLogps::default()
            })
            .collect();
        let out = pair_loss(&p, &pairs);
        let k = pairs.len() as f64;
        // ORPO's NLL term (the chosen tokens' mean NLL) is not part of TRL's odds_ratio_loss.
        let nll = if loss == PreferenceLoss::Orpo { -c.iter().sum::<f64>() / k } else { 0.0 };
        let what = format!("{loss} beta {}", p.beta);
        let value = out.sum / k - nll;
        let want = case["value"].as_f64().unwrap();
        // ORPOTrainer computes in f32; CPOTrainer in the inputs' f64.
        let tol = if loss == PreferenceLoss::Orpo { 1e-6 } else { 1e-10 };
        assert!((value - want).abs() < tol * want.abs().max(1.0), "{what}: {value} vs TRL {want}");
        let nll_grad = if loss == PreferenceLoss::Orpo { -1.0 } else { 0.0 };
        let dc: Vec<f64> = out.d_chosen.iter().map(|d| (d - nll_grad) / k).collect();
        let dr: Vec<f64> = out.d_rejected.iter().map(|d| d / k).collect();
        assert!(max_rel_diff(&dc, &floats(&case["d_chosen"])) < tol, "{what}: d chosen {dc:?}");
        assert!(max_rel_diff(&dr, &floats(&case["d_rejected"])) < tol, "{what}: d rejected {dr:?}");
        assert!(max_rel_diff(&out.chosen_rewards, &floats(&case["chosen_rewards"])) < tol, "{what}: rewards");
        assert!(max_rel_diff(&out.rejected_rewards, &floats(&case["rejected_rewards"])) < tol, "{what}: rewards");
    }
}

#[test]
fn reward_model_loss_metrics_and_gradients_match_reward_trainer() {
    let f = fixture();
    let dir = fixtures().join(f["reward_model"].as_str().unwrap());
    let model = Model::load(&dir, &LoadOptions::new(Task::SequenceClassification)).unwrap().0;
    // RewardTrainer joins an explicit prompt to each completion; the whole sequence is scored.
    let examples = pairs(&f);
    let n = examples.len();
    for case in f["reward_trainer"].as_array().unwrap() {
        let params =
            RewardParams { margin: case["margin"].as_f64().unwrap(), center: case["center_rewards"].as_f64().unwrap() };
        for padding_free in [false, true] {
            let objective = Preference {
                objective: PairObjective::Reward(params),
                reference: Reference::None,
                packed: padding_free,
            };
            let opts = LoaderOptions { batch_size: n, shuffle: false, padding_free, ..LoaderOptions::default() };
            let loader = Loader::new(examples.clone(), opts).unwrap();
            let both = Preference::pair_batch(&loader, &loader.collate(&(0..n).collect::<Vec<_>>()));
            let g = Graph::train(0);
            let step = objective.step(&model, &g, &both, &[], n as f64, false).unwrap();
            let what = format!("{params:?} padding_free {padding_free}");
            let got = step.loss.value().scalar_value().unwrap();
            let want = case["loss"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: loss {got} vs TRL {want}");
            let metrics = objective.metrics(&step.stats);
            for (name, want) in case["metrics"].as_object().unwrap() {
                let (got, want) = (metrics[name].as_f64().unwrap(), want.as_f64().unwrap());
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: {name} {got} vs TRL {want}");
            }
            assert_grads_match(&model, &g, &step.loss, &case["grads"], &what);
        }
    }
}

#[test]
fn grpo_advantages_loss_and_lora_gradients_match_grpo_trainer() {
    let f = fixture();
    let base =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(f["model"].as_str().unwrap().replace("crates/", ""));
    let mut model = Model::load(&base, &LoadOptions::new(Task::CausalLm)).unwrap().0;
    lora::load_adapter(&mut model, &fixtures().join("adapter")).unwrap();
    let grpo = &f["grpo"];
    let group = grpo["group"].as_u64().unwrap() as usize;
    let adv = advantages(&floats(&grpo["rewards"]), group, AdvantageKind::Group);
    let want = floats(&grpo["advantages"]);
    assert!(max_rel_diff(&adv, &want) < 1e-6, "advantages {adv:?} vs TRL {want:?}");
    let prompts: Vec<Vec<u32>> = grpo["prompts"].as_array().unwrap().iter().map(ids).collect();
    let completions: Vec<Vec<u32>> = grpo["completions"].as_array().unwrap().iter().map(ids).collect();
    let seqs: Vec<(&[u32], &[u32])> =
        completions.iter().enumerate().map(|(k, c)| (prompts[k / group].as_slice(), c.as_slice())).collect();
    let (batch, spans) = completion_batch(&seqs, 0);
    for case in grpo["cases"].as_array().unwrap() {
        let params = GrpoParams {
            aggregation: case["loss_type"].as_str().unwrap().parse().unwrap(),
            beta: case["beta"].as_f64().unwrap(),
            epsilon: case["epsilon"].as_f64().unwrap(),
            max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
        };
        let reference = if params.beta == 0.0 { RefPolicy::None } else { RefPolicy::AdaptersOff };
        let rollout = Rollout {
            batch: batch.clone(),
            spans: spans.clone(),
            advantages: adv.clone(),
            ref_logps: reference_logps(&reference, &mut model, &batch, &spans).unwrap(),
            old_logps: case["old_logps"].as_array().map(|a| a.iter().map(floats).collect()).unwrap_or_default(),
            prompts: prompts.len(),
            stats: GrpoStats { completions: completions.len(), ..GrpoStats::default() },
        };
        let what = format!("{:?} beta {} old {}", params.aggregation, params.beta, !rollout.old_logps.is_empty());
        let g = Graph::train(0);
        // The normalizer is the step's prompts: one micro-batch, so the loss is TRL's batch loss.
        let step = policy_step(&params, &model, &g, &rollout, prompts.len() as f64, false).unwrap();
        let got = step.loss.value().scalar_value().unwrap();
        let want = case["loss"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: loss {got} vs TRL {want}");
        assert_grads_match(&model, &g, &step.loss, &case["grads"], &what);
    }
}

#[test]
fn kto_loss_metrics_and_lora_gradients_match_kto_trainer() {
    let f = fixture();
    let base =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(f["model"].as_str().unwrap().replace("crates/", ""));
    let mut model = Model::load(&base, &LoadOptions::new(Task::CausalLm)).unwrap().0;
    lora::load_adapter(&mut model, &fixtures().join("adapter")).unwrap();
    let examples: Vec<Encoded> = f["kto"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| Encoded {
            sequence: sequence(&ids(&r["prompt_ids"]), &ids(&r["completion_ids"])),
            rejected: None,
            others: Vec::new(),
            target: Target::Desirable(r["desirable"].as_bool().unwrap()),
            truncated: false,
            loc: Loc { file: Arc::from(Path::new("kto.jsonl")), line: i + 1 },
        })
        .collect();
    let rows: Vec<usize> = (0..examples.len()).collect();
    for case in f["kto"]["cases"].as_array().unwrap() {
        let kto = Kto {
            params: KtoParams {
                beta: case["beta"].as_f64().unwrap(),
                desirable_weight: case["desirable_weight"].as_f64().unwrap(),
                undesirable_weight: case["undesirable_weight"].as_f64().unwrap(),
            },
            reference: Reference::AdaptersOff,
            pad_id: 0,
        };
        let what = format!("{:?}", kto.params);
        let batch = kto.prepare(&mut model, &examples, &rows).unwrap();
        let g = Graph::train(0);
        let step = kto.step(&model, &g, &batch, rows.len() as f64, false).unwrap();
        let got = step.loss.value().scalar_value().unwrap();
        let want = case["loss"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: loss {got} vs TRL {want}");
        let metrics = step.stats.metrics();
        for (name, want) in case["metrics"].as_object().unwrap() {
            let (got, want) = (metrics[name].as_f64().unwrap(), want.as_f64().unwrap());
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: {name} {got} vs TRL {want}");
        }
        assert_grads_match(&model, &g, &step.loss, &case["grads"], &what);
    }
}
