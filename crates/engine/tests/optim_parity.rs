//! AdamW and SGD against torch.optim trajectories (fixture from scripts/make_optim_fixture.py):
//! 10 steps, two parameter groups, global grad-norm clipping.

use tunesmith_engine::optim::{clip_grad_norm, AdamW, Optimizer, ParamGroup, Sgd};
use tunesmith_engine::{Grads, ParamStore, Tensor};

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn run(case: &str, make: impl Fn(&ParamStore, Vec<ParamGroup>) -> Box<dyn Optimizer>, lrs: [(f64, f64); 2]) {
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/optim_torch.json")).unwrap();
    let mut store = ParamStore::new();
    let a = store.insert("a", Tensor::from_vec(floats(&fx["p0"]), &[5, 3]).unwrap(), true).unwrap();
    let b = store.insert("b", Tensor::from_vec(floats(&fx["p1"]), &[7]).unwrap(), true).unwrap();
    let groups = vec![
        ParamGroup { params: vec![a], lr: lrs[0].0, weight_decay: lrs[0].1 },
        ParamGroup { params: vec![b], lr: lrs[1].0, weight_decay: lrs[1].1 },
    ];
    let mut opt = make(&store, groups);
    let expected = &fx["cases"][case];
    let mut worst = 0.0f64;
    for (step, g) in fx["grads"].as_array().unwrap().iter().enumerate() {
        let mut grads = Grads::new();
        grads.add_param(a, Tensor::from_vec(floats(&g[0]), &[5, 3]).unwrap()).unwrap();
        grads.add_param(b, Tensor::from_vec(floats(&g[1]), &[7]).unwrap()).unwrap();
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        let want_norm = expected["grad_norms"][step].as_f64().unwrap();
        assert!((norm - want_norm).abs() / want_norm < 1e-6, "{case} step {step}: norm {norm} vs {want_norm}");
        opt.step(&mut store, &grads).unwrap();
        for (i, id) in [a, b].into_iter().enumerate() {
            let got = store.get(id).value.to_vec::<f32>().unwrap();
            let want = floats(&expected["trajectory"][step][i]);
            for (x, y) in got.iter().zip(&want) {
                let rel = ((x - y).abs() / y.abs().max(1e-3)) as f64;
                worst = worst.max(rel);
            }
        }
    }
    assert!(worst <= 1e-6, "{case}: worst relative difference {worst:e} over 10 steps");
}

#[test]
fn adamw_matches_torch_over_ten_steps() {
    run("adamw", |s, g| Box::new(AdamW::new(s, g, (0.9, 0.999), 1e-8).unwrap()), [(1e-2, 0.1), (3e-3, 0.0)]);
}

#[test]
fn sgd_nesterov_matches_torch() {
    run("sgd_nesterov", |s, g| Box::new(Sgd::new(s, g, 0.9, 0.0, true).unwrap()), [(0.1, 0.01), (0.05, 0.0)]);
}

#[test]
fn sgd_dampened_momentum_matches_torch() {
    run("sgd_dampened", |s, g| Box::new(Sgd::new(s, g, 0.8, 0.3, false).unwrap()), [(0.1, 0.0), (0.2, 0.05)]);
}

#[test]
fn adamw_state_round_trips_for_exact_resume() {
    let mut store = ParamStore::new();
    let a = store.insert("a", Tensor::from_vec(vec![1.0f32, -2.0, 3.0], &[3]).unwrap(), true).unwrap();
    let groups = vec![ParamGroup { params: vec![a], lr: 0.1, weight_decay: 0.01 }];
    let grad = |k: f32| {
        let mut g = Grads::new();
        g.add_param(a, Tensor::from_vec(vec![0.3 * k, -0.1, 0.7 / k], &[3]).unwrap()).unwrap();
        g
    };
    let mut opt = AdamW::new(&store, groups.clone(), (0.9, 0.99), 1e-8).unwrap();
    for k in 1..=3 {
        opt.step(&mut store, &grad(k as f32)).unwrap();
    }
    let saved_state = opt.export_state(&store);
    let mut resumed_store = store.clone();
    let mut resumed = AdamW::new(&resumed_store, groups, (0.9, 0.99), 1e-8).unwrap();
    resumed.import_state(&resumed_store, &saved_state).unwrap();
    for k in 4..=6 {
        opt.step(&mut store, &grad(k as f32)).unwrap();
        resumed.step(&mut resumed_store, &grad(k as f32)).unwrap();
    }
    assert_eq!(store.get(a).value.to_vec::<f32>().unwrap(), resumed_store.get(a).value.to_vec::<f32>().unwrap());
    assert_eq!(resumed.steps_taken(), 6);
}
