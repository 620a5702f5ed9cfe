//! The run config: overrides, unknown keys with suggestions, value checks, and the starter.

use tunesmith_train::config::{starter_for, MethodKind, RunConfig, TaskKind, STARTER};

const MINIMAL: &str = "[model]\npath = \"m\"\n[task]\nkind = \"classification\"\n[data]\ntrain = \"t.jsonl\"\n";

#[test]
fn the_starter_config_parses_and_every_override_applies() {
    let cfg = RunConfig::parse(STARTER, "starter", &[]).unwrap();
    assert_eq!(cfg.task.kind, TaskKind::Classification);
    let cfg = RunConfig::parse(
        STARTER,
        "starter",
        &[
            "train.lr=2e-5".into(),
            "method.kind=lora".into(),
            "method.lora_targets=[\"query\", \"value\"]".into(),
            "data.packing=true".into(),
            "data.padding_free=false".into(),
            "train.dropout=0.0".into(),
            "output.dir=runs/x".into(),
        ],
    )
    .unwrap();
    assert_eq!(cfg.train.lr, 2e-5);
    assert_eq!(cfg.method.kind, MethodKind::Lora);
    assert_eq!(cfg.method.lora_targets, vec!["query".to_string(), "value".to_string()]);
    assert!(cfg.data.packing && !cfg.data.padding_free);
    assert_eq!(cfg.train.dropout, Some(0.0));
    assert_eq!(cfg.output.dir.to_str(), Some("runs/x"));
    // The resolved config round-trips through TOML (what manifests and checkpoints record).
    assert_eq!(RunConfig::parse(&cfg.to_toml(), "resolved", &[]).unwrap(), cfg);
}

#[test]
fn unknown_keys_name_the_key_and_suggest_the_nearest() {
    let err = RunConfig::parse(&format!("{MINIMAL}[train]\nlrr = 1e-4\n"), "run.toml", &[]).unwrap_err().to_string();
    assert!(
        err.contains("run.toml") && err.contains("`train.lrr`") && err.contains("did you mean `train.lr`"),
        "{err}"
    );
    let err = RunConfig::parse(MINIMAL, "run.toml", &["train.wramup_ratio=0.1".into()]).unwrap_err().to_string();
    assert!(err.contains("did you mean `train.warmup_ratio`"), "{err}");
    let err = RunConfig::parse(&format!("{MINIMAL}[trian]\nlr = 1\n"), "run.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("unknown key `trian`") && err.contains("did you mean `train`"), "{err}");
    let err = RunConfig::parse(MINIMAL, "run.toml", &["train.lr".into()]).unwrap_err().to_string();
    assert!(err.contains("section.key=value"), "{err}");
}

#[test]
fn bad_values_are_refused_with_the_key() {
    for (extra, key) in [
        ("[train]\nschedule = \"cosin\"\n", "train.schedule"),
        ("[train]\nlr = -1.0\n", "train.lr"),
        ("[train]\nwarmup_ratio = 1.5\n", "train.warmup_ratio"),
        ("[method]\nkind = \"partial\"\nfreeze_layers = \"5-2\"\n", "method.freeze_layers"),
        ("[train]\nepochs = 0\n", "train.epochs"),
        ("[train]\ndropout = 1.0\n", "train.dropout"),
        ("[method]\nkind = \"full\"\nloraplus_lr_ratio = 16.0\n", "method.loraplus_lr_ratio"),
        ("[method]\nkind = \"lora\"\nloraplus_lr_ratio = 0.0\n", "method.loraplus_lr_ratio"),
    ] {
        let err = RunConfig::parse(&format!("{MINIMAL}{extra}"), "run.toml", &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
    let err =
        RunConfig::parse(&format!("{MINIMAL}[method]\nkind = \"lorra\"\n"), "run.toml", &[]).unwrap_err().to_string();
    assert!(err.contains("lorra") && err.contains("lora"), "{err}");
}

#[test]
fn base_quantization_is_checked_against_the_method_and_the_model() {
    let parse = |sets: &[&str]| {
        RunConfig::parse(MINIMAL, "run.toml", &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    let e = parse(&["model.quantize=int4"]).unwrap_err();
    assert!(e.contains("model.quantize") && e.contains("nf4"), "{e}");
    let e = parse(&["model.quantize=nf4"]).unwrap_err();
    assert!(e.contains("model.quantize") && e.contains("lora"), "{e}");
    let e = parse(&["model.quantize=keep", "method.kind=lora"]).unwrap_err();
    assert!(e.contains("GGUF"), "{e}");
    assert_eq!(parse(&["model.quantize=nf4", "method.kind=lora"]).unwrap().model.quantize, "nf4");
    assert_eq!(parse(&[]).unwrap().model.quantize, "none");
}

#[test]
fn every_method_has_a_starter_that_parses_with_its_keys_set() {
    for method in MethodKind::ALL {
        let text = starter_for(method);
        let cfg = RunConfig::parse(&text, "starter", &[]).unwrap_or_else(|e| panic!("{}: {e}", method.name()));
        assert_eq!(cfg.method.kind, method);
        assert_eq!(MethodKind::parse(method.name()), Some(method));
        let m = &cfg.method;
        match method {
            MethodKind::Partial => assert_eq!(m.freeze_layers.as_deref(), Some("0-3")),
            MethodKind::GradualUnfreeze => assert!(text.contains("\nunfreeze_every = \"epoch\"")),
            MethodKind::Lora => {
                assert_eq!((m.lora_r, m.lora_alpha, m.lora_targets.clone()), (8, 16.0, vec!["all-linear".to_string()]));
                assert!((m.lora_dropout - 0.05).abs() < 1e-12);
            }
            _ => {}
        }
        let lr = if matches!(method, MethodKind::Lora | MethodKind::FeatureExtraction) { 1e-3 } else { 1e-4 };
        assert_eq!(cfg.train.lr, lr, "{}", method.name());
    }
    assert_eq!(starter_for(MethodKind::Full), STARTER, "the full-fine-tuning starter is the plain starter");
    assert_eq!(MethodKind::parse("ia4"), None);
}
