//! `cargo run --release -p bench -- <suite>`: tunesmith side by side with its Python peers,
//! in one invocation on the same machine and thread count. See bench/README.md.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod ops;
mod peer;
mod table;
mod timing;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "tunesmith side-by-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// Fused ops (forward+backward) against the same ops in PyTorch.
    Ops(ops::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.suite {
        Suite::Ops(a) => ops::run(a),
    }
}
