//! Hub loading through `hf-hub`, against a local HTTP server that imitates the Hub's API
//! (`/api/models/<id>/revision/<rev>` and `/<id>/resolve/<rev>/<file>` with range requests,
//! ETag and X-Repo-Commit headers). Covers single-file and sharded repos, revisions, the standard
//! cache, HF_HUB_OFFLINE, and clear errors. One test function: the HF_* variables are
//! process-wide.

use std::collections::HashMap;
use std::path::Path;

use tunesmith_engine::{Graph, Tensor};
use tunesmith_models::weights::{save_safetensors, Checkpoint};
use tunesmith_models::{hub, Batch, LoadOptions, Model, Task};
use tunesmith_testkit::fake_hub::{FakeHub, FakeRepo, RepoKind};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama_gqa")
}

fn repo_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["config.json", "generation_config.json", "model.safetensors"]
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

fn sharded_files(dir: &Path, tmp: &Path) -> Vec<(String, Vec<u8>)> {
    let ck = Checkpoint::open_dir(dir).unwrap();
    let names: Vec<String> = ck.names().map(String::from).collect();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    let mut files = vec![("config.json".to_string(), std::fs::read(dir.join("config.json")).unwrap())];
    for (i, part) in [a, b].iter().enumerate() {
        let fname = format!("model-0000{}-of-00002.safetensors", i + 1);
        let tensors: Vec<(String, Tensor)> = part.iter().map(|n| (n.clone(), ck.take(n).unwrap())).collect();
        let path = tmp.join(&fname);
        save_safetensors(&path, &tensors, None).unwrap();
        for n in *part {
            map.insert(n.clone(), serde_json::Value::String(fname.clone()));
        }
        files.push((fname, std::fs::read(&path).unwrap()));
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    files.push(("model.safetensors.index.json".into(), serde_json::to_vec(&index).unwrap()));
    files
}

fn logits(dir: &Path) -> Tensor {
    let (model, _) = Model::load(dir, &LoadOptions::new(Task::CausalLm)).unwrap();
    let batch = Batch::from_ids(&[vec![3, 14, 15, 92, 6]]).unwrap();
    let g = Graph::inference();
    model.forward(&g, &batch, false).unwrap().into_value()
}

#[test]
fn hub_download_cache_and_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = |sha: &str, files| FakeRepo { sha: sha.into(), files };
    let mut repos = HashMap::new();
    repos.insert(
        (RepoKind::Model, "tiny-org/llama-gqa".into()),
        repo("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", repo_files(&fixture())),
    );
    repos.insert(
        (RepoKind::Model, "tiny-org/llama-sharded".into()),
        repo("0123456789abcdef0123456789abcdef01234567", sharded_files(&fixture(), tmp.path())),
    );
    repos.insert(
        (RepoKind::Model, "tiny-org/not-a-model".into()),
        repo("ffffffffffffffffffffffffffffffffffffffff", vec![("README.md".into(), b"hi".to_vec())]),
    );
    let mut server = FakeHub::serve(repos);
    let addr = server.endpoint.clone();
    let home = tmp.path().join("hf_home");
    std::env::set_var("HF_HOME", &home);
    std::env::set_var("HF_ENDPOINT", &addr);
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_HUB_CACHE");
    let want = logits(&fixture());

    // Single file, default revision: downloaded into the standard cache layout.
    let dir = hub::resolve_model("tiny-org/llama-gqa").unwrap();
    assert!(dir.starts_with(home.join("hub/models--tiny-org--llama-gqa/snapshots")), "{}", dir.display());
    assert!(dir.join("generation_config.json").exists());
    assert_eq!(logits(&dir).max_abs_diff(&want).unwrap(), 0.0);

    // Sharded, with an explicit revision.
    let dir = hub::resolve_model("tiny-org/llama-sharded@main").unwrap();
    assert!(dir.join("model-00002-of-00002.safetensors").exists());
    assert_eq!(logits(&dir).max_abs_diff(&want).unwrap(), 0.0);

    // Errors name the repo and say what is wrong.
    let err = hub::resolve_model("tiny-org/missing").unwrap_err().to_string();
    assert!(err.contains("tiny-org/missing"), "{err}");
    let err = hub::resolve_model("tiny-org/not-a-model").unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");

    // Offline: the cache serves what was downloaded, with no server at all.
    server.stop();
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let dir = hub::resolve_model("tiny-org/llama-gqa").unwrap();
    assert_eq!(logits(&dir).max_abs_diff(&want).unwrap(), 0.0);
    let err = hub::resolve_model("tiny-org/never-downloaded").unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("not in the cache"), "{err}");

    // A local folder wins over everything.
    assert_eq!(hub::resolve_model(fixture().to_str().unwrap()).unwrap(), fixture());
    std::env::remove_var("HF_HUB_OFFLINE");
}
