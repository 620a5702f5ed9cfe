//! `bench -- ops`: forward+backward of the engine's fused ops against the same ops in PyTorch
//! (bench/ops_peer.py), same shapes, same thread count, one table.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tunesmith_engine::gradcheck::randn;
use tunesmith_engine::ops::{AttentionSpec, CrossEntropySpec, LoraSpec};
use tunesmith_engine::precision::Precision;
use tunesmith_engine::{DType, Grads, Graph, Tensor, Var};

use crate::{peer, table, timing};

/// Options of the ops suite.
#[derive(clap::Args)]
pub struct Args {
    /// Threads for both sides (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Minimum seconds spent timing each case on each side.
    #[arg(long, default_value_t = 0.6)]
    min_time: f64,
    /// Skip the PyTorch side (print tunesmith timings only).
    #[arg(long)]
    no_peer: bool,
    /// Only run cases whose op name contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Rounds per side, alternating tunesmith and PyTorch; each side's fastest median per case
    /// is reported (as in the train suite: this machine's speed drifts over minutes, and
    /// alternation exposes both sides to the same drift).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Matrix-product precision of both sides: fp32, or bf16 (ours: bf16 products with f32
    /// sums; PyTorch: torch.autocast on the CPU with bfloat16).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
}

struct Case {
    name: &'static str,
    shape: String,
    spec: serde_json::Value,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name: &'static str, shape: String, spec: serde_json::Value| v.push(Case { name, shape, spec });
    add("linear (trainable W)", "x 1024×512, W 1536×512".into(), json!({"op":"linear","n":1024,"in":512,"out":1536}));
    add(
        "linear (frozen W)",
        "x 1024×512, W 1536×512".into(),
        json!({"op":"linear_frozen","n":1024,"in":512,"out":1536}),
    );
    add(
        "lora_linear r=16",
        "x 1024×512, W 1536×512, p=0.05".into(),
        json!({"op":"lora","n":1024,"in":512,"out":1536,"r":16,"scale":2.0,"dropout":0.05}),
    );
    add("attention causal", "B8 T128 H8 D64".into(), json!({"op":"attention","b":8,"t":128,"h":8,"hkv":8,"d":64}));
    add("attention causal", "B2 T512 H8 D64".into(), json!({"op":"attention","b":2,"t":512,"h":8,"hkv":8,"d":64}));
    add(
        "attention causal GQA",
        "B2 T512 H8 Hkv2 D64".into(),
        json!({"op":"attention","b":2,"t":512,"h":8,"hkv":2,"d":64}),
    );
    add("layer_norm", "4096×768".into(), json!({"op":"layer_norm","n":4096,"d":768}));
    add("rms_norm", "4096×768".into(), json!({"op":"rms_norm","n":4096,"d":768}));
    add("cross_entropy (fused)", "N1024 d512 V8192".into(), json!({"op":"cross_entropy","n":1024,"d":512,"v":8192}));
    add("cross_entropy (fused)", "N1024 d512 V32000".into(), json!({"op":"cross_entropy","n":1024,"d":512,"v":32000}));
    // Hidden states twice as large: logits of std ≈ 45, a peaked softmax whose small
    // probabilities are mostly subnormal in f32 (the denormal case of Intel cores).
    add(
        "cross_entropy peaked",
        "N1024 d512 V32000, h×2".into(),
        json!({"op":"cross_entropy","n":1024,"d":512,"v":32000,"h_scale":2.0}),
    );
    v
}

fn f32(shape: &[usize], seed: u64) -> Tensor {
    randn(shape, seed).to_dtype(DType::F32).expect("f32")
}

fn backward_ones(g: &Graph<'_>, y: &Var) {
    let ones = Tensor::full(y.shape(), 1.0, DType::F32, y.value().device()).expect("ones");
    let mut grads = Grads::new();
    g.backward_with(&[(y, ones)], &mut grads).expect("backward");
}

/// Builds a closure running one forward+backward of the case in tunesmith.
fn ours(spec: &serde_json::Value) -> Box<dyn FnMut()> {
    let u = |k: &str| spec[k].as_u64().unwrap_or(0) as usize;
    match spec["op"].as_str().unwrap_or("") {
        op @ ("linear" | "linear_frozen") => {
            let (x, w, b) = (f32(&[u("n"), u("in")], 1), f32(&[u("out"), u("in")], 2), f32(&[u("out")], 3));
            let trainable = op == "linear";
            Box::new(move || {
                let g = Graph::train(0);
                let xv = g.leaf(x.clone());
                let (wv, bv) = if trainable {
                    (g.leaf(w.clone()), g.leaf(b.clone()))
                } else {
                    (g.input(w.clone()), g.input(b.clone()))
                };
                let y = g.linear(&xv, &wv, Some(&bv)).unwrap();
                backward_ones(&g, &y);
            })
        }
        "lora" => {
            let (x, w) = (f32(&[u("n"), u("in")], 1), f32(&[u("out"), u("in")], 2));
            let (a, bm) = (f32(&[u("r"), u("in")], 3), f32(&[u("out"), u("r")], 4));
            let lspec = LoraSpec {
                scale: spec["scale"].as_f64().unwrap_or(1.0),
                dropout: spec["dropout"].as_f64().unwrap_or(0.0) as f32,
            };
            Box::new(move || {
                let g = Graph::train(0);
                let (xv, wv, av, bv) = (g.leaf(x.clone()), g.input(w.clone()), g.leaf(a.clone()), g.leaf(bm.clone()));
                let y = g.lora_linear(&xv, &wv, None, &av, &bv, lspec).unwrap();
                backward_ones(&g, &y);
            })
        }
        "attention" => {
            let (b, t, h, hkv, d) = (u("b"), u("t"), u("h"), u("hkv"), u("d"));
            let (q, k, v) = (f32(&[b, t, h, d], 1), f32(&[b, t, hkv, d], 2), f32(&[b, t, hkv, d], 3));
            Box::new(move || {
                let g = Graph::train(0);
                let (qv, kv, vv) = (g.leaf(q.clone()), g.leaf(k.clone()), g.leaf(v.clone()));
                let o = g
                    .attention(&qv, &kv, &vv, None, None, AttentionSpec { causal: true, ..Default::default() })
                    .unwrap();
                backward_ones(&g, &o);
            })
        }
        "layer_norm" => {
            let (x, gm, bt) = (f32(&[u("n"), u("d")], 1), f32(&[u("d")], 2), f32(&[u("d")], 3));
            Box::new(move || {
                let g = Graph::train(0);
                let (xv, gv, bv) = (g.leaf(x.clone()), g.leaf(gm.clone()), g.leaf(bt.clone()));
                let y = g.layer_norm(&xv, Some(&gv), Some(&bv), 1e-5).unwrap();
                backward_ones(&g, &y);
            })
        }
        "rms_norm" => {
            let (x, gm) = (f32(&[u("n"), u("d")], 1), f32(&[u("d")], 2));
            Box::new(move || {
                let g = Graph::train(0);
                let (xv, gv) = (g.leaf(x.clone()), g.leaf(gm.clone()));
                let y = g.rms_norm(&xv, &gv, 1e-6, 0.0).unwrap();
                backward_ones(&g, &y);
            })
        }
        "cross_entropy" => {
            let (n, d, v) = (u("n"), u("d"), u("v"));
            let h_scale = spec["h_scale"].as_f64().unwrap_or(1.0) as f32;
            let h = f32(&[n, d], 1);
            let h = Tensor::from_vec(h.to_vec::<f32>().unwrap().into_iter().map(|x| x * h_scale).collect(), &[n, d])
                .unwrap();
            let w = f32(&[v, d], 2);
            let labels = Tensor::from_vec((0..n).map(|i| ((i * 7919) % v) as i64).collect::<Vec<i64>>(), &[n]).unwrap();
            Box::new(move || {
                let g = Graph::train(0);
                let (hv, wv) = (g.leaf(h.clone()), g.leaf(w.clone()));
                let out = g.linear_cross_entropy(&hv, &wv, None, &labels, None, CrossEntropySpec::default()).unwrap();
                let mut grads = Grads::new();
                g.backward(&out.loss, &mut grads).unwrap();
            })
        }
        other => panic!("unknown op {other}"),
    }
}

/// Runs the suite and prints the table.
pub fn run(args: Args) -> Result<()> {
    let threads = tunesmith_engine::threads::init(args.threads);
    let precision = Precision::parse(&args.precision).context("--precision")?;
    tunesmith_engine::precision::set(precision);
    let min_time = Duration::from_secs_f64(args.min_time);
    let cases: Vec<Case> =
        cases().into_iter().filter(|c| args.only.as_ref().is_none_or(|o| c.name.contains(o.as_str()))).collect();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut our_ms = vec![f64::INFINITY; cases.len()];
    let mut peer_ms: Option<Vec<f64>> = (!args.no_peer).then(|| vec![f64::INFINITY; cases.len()]);
    let mut torch = String::new();
    for round in 1..=args.rounds {
        for (c, best) in cases.iter().zip(our_ms.iter_mut()) {
            let mut f = ours(&c.spec);
            let ms = timing::median_ms(min_time, &mut *f);
            eprintln!("tunesmith  {:<24} {:<32} {ms:>9.2} ms (round {round})", c.name, c.shape);
            *best = best.min(ms);
        }
        if let Some(peer) = peer_ms.as_mut() {
            let out = run_peer(&cases, threads, precision)?;
            torch = out["torch"].as_str().unwrap_or_default().to_string();
            for (i, best) in peer.iter_mut().enumerate() {
                let ms = out[format!("case{i}")]
                    .as_f64()
                    .with_context(|| format!("the PyTorch side reported no time for case {i}"))?;
                eprintln!("PyTorch    {:<24} {:<32} {ms:>9.2} ms (round {round})", cases[i].name, cases[i].shape);
                *best = best.min(ms);
            }
        }
    }
    let mut rows = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let theirs = peer_ms.as_ref().map(|p| p[i]);
        rows.push(vec![
            c.name.to_string(),
            c.shape.clone(),
            format!("{:.2}", our_ms[i]),
            theirs.map_or("-".into(), |t| format!("{t:.2}")),
            theirs.map_or("-".into(), |t| format!("{:.2}", t / our_ms[i])),
        ]);
    }
    let rounds = if args.rounds > 1 {
        format!(", fastest median of {} alternating rounds per side", args.rounds)
    } else {
        String::new()
    };
    let precision = match precision {
        Precision::Bf16 => format!("bf16 (our kernel: {})", tunesmith_engine::precision::bf16_kernel().name()),
        Precision::Fp32 => "fp32".into(),
    };
    println!(
        "\nops, forward+backward, {threads} threads, {precision}{rounds}, {} (PyTorch {torch})\n",
        timing::cpu_model()
    );
    println!("{}", table::markdown(&["op", "shape", "tunesmith ms", "PyTorch ms", "ratio (PyTorch/tunesmith)"], &rows));
    Ok(())
}

/// Times every case once in bench/ops_peer.py; returns its JSON (`caseN` medians, `torch`).
fn run_peer(cases: &[Case], threads: usize, precision: Precision) -> Result<serde_json::Value> {
    let specs: Vec<serde_json::Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut s = c.spec.clone();
            s["name"] = json!(format!("case{i}"));
            s
        })
        .collect();
    let path = std::env::temp_dir().join(format!("tunesmith-ops-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&specs)?)?;
    let script = peer::repo_root().join("bench/ops_peer.py");
    let args = [
        path.display().to_string(),
        "--threads".into(),
        threads.to_string(),
        "--precision".into(),
        precision.name().into(),
    ];
    let out = peer::run_python(&script, &args)
        .context("running the PyTorch side (see bench/README.md to set up its venv)")?;
    let _ = std::fs::remove_file(&path);
    peer::last_json(&out)
}
