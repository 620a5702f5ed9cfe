//! `cargo run --release -p bench -- <suite>`: tunesmith side by side with its Python peers,
//! in one invocation on the same machine and thread count. See bench/README.md.

mod active;
mod clean;
mod continual;
mod cv;
mod data;
mod distill;
mod dp;
mod dp_sst2;
mod dpo;
mod eval;
mod grpo;
mod ops;
mod peer;
mod qlora;
mod sst2;
mod sweep;
mod table;
mod timing;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "tunesmith side-by-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// Tokenizing and packing chat examples against TRL's SFT preprocessing.
    Data(data::Args),
    /// BLEU and ROUGE over many pairs against sacrebleu and rouge-score.
    Eval(eval::Args),
    /// Fine-tuning MiniLM on SST-2 (full, LoRA, feature extraction) against the HF Trainer.
    Sst2(sst2::Args),
    /// Fused ops (forward+backward) against the same ops in PyTorch.
    Ops(ops::Args),
    /// Training steps of peer.py's workloads against PyTorch + transformers + PEFT.
    Train(train::Args),
    /// (internal) one tunesmith training run, in its own process for a clean peak RSS.
    #[command(hide = true)]
    TrainOne(train::OneArgs),
    /// LoRA on a GGUF model, base in f32 or kept quantized (QLoRA), against PEFT.
    Qlora(qlora::Args),
    /// (internal) one tunesmith QLoRA run, in its own process.
    #[command(hide = true)]
    QloraOne(qlora::OneArgs),
    /// DPO with LoRA on a GGUF model against TRL's DPOTrainer with PEFT.
    Dpo(dpo::Args),
    /// (internal) one tunesmith DPO run, in its own process.
    #[command(hide = true)]
    DpoOne(dpo::OneArgs),
    /// A DP-SGD step against a plain step and against Opacus' DP step (peer.py's BERT workloads).
    Dp(dp::Args),
    /// DP-SGD fine-tuning of MiniLM on SST-2 at target ε against Opacus and the non-private run.
    DpSst2(dp_sst2::Args),
    /// (internal) one tunesmith DP step timing, in its own process.
    #[command(hide = true)]
    DpOne(dp::OneArgs),
    /// Forgetting on SST-2 → SUBJ → SMS spam, naive and with replay, EWC, L2-SP and LwF.
    Continual(continual::Args),
    /// A 3-layer MiniLM student distilled from a fine-tuned MiniLM teacher on SST-2, against
    /// the same student without distillation.
    Distill(distill::Args),
    /// Simulated active learning on SST-2: uncertainty sampling against random selection.
    Active(active::Args),
    /// 5-fold cross-validation on a 500-row sample of MPQA.
    Cv(cv::Args),
    /// Data cleaning on SUBJ with planted duplicates and flipped labels.
    Clean(clean::Args),
    /// Hyperparameter search on MiniLM SST-2: TPE against random search, with ASHA pruning.
    Sweep(sweep::Args),
    /// GRPO with LoRA on a GGUF model against TRL's GRPOTrainer with PEFT.
    Grpo(grpo::Args),
    /// (internal) one tunesmith GRPO run, in its own process.
    #[command(hide = true)]
    GrpoOne(grpo::OneArgs),
}

fn main() -> anyhow::Result<()> {
    tunesmith_engine::alloc::configure();
    let cli = Cli::parse();
    match cli.suite {
        Suite::Data(a) => data::run(a),
        Suite::Eval(a) => eval::run(a),
        Suite::Sst2(a) => sst2::run(a),
        Suite::Ops(a) => ops::run(a),
        Suite::Train(a) => train::run(a),
        Suite::TrainOne(a) => train::run_one(a),
        Suite::Qlora(a) => qlora::run(a),
        Suite::QloraOne(a) => qlora::run_one(a),
        Suite::Dp(a) => dp::run(a),
        Suite::DpOne(a) => dp::run_one(a),
        Suite::DpSst2(a) => dp_sst2::run(a),
        Suite::Dpo(a) => dpo::run(a),
        Suite::DpoOne(a) => dpo::run_one(a),
        Suite::Continual(a) => continual::run(a),
        Suite::Distill(a) => distill::run(a),
        Suite::Sweep(a) => sweep::run(a),
        Suite::Clean(a) => clean::run(a),
        Suite::Cv(a) => cv::run(a),
        Suite::Active(a) => active::run(a),
        Suite::Grpo(a) => grpo::run(a),
        Suite::GrpoOne(a) => grpo::run_one(a),
    }
}
