//! Hub dataset repos through `hf-hub`, against the local fake Hub: data files are downloaded into
//! the standard cache (`datasets--owner--name`), a split selects files, HF_HUB_OFFLINE serves the
//! cache without a server, and errors name the repo. One test function: HF_* are process-wide.

use std::collections::HashMap;

use tunesmith_data::read::resolve_dataset;
use tunesmith_data::{Dataset, LoadOptions, Source};
use tunesmith_testkit::fake_hub::{FakeHub, FakeRepo, RepoKind};

#[test]
fn hub_datasets_download_cache_and_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let train = b"{\"text\": \"good movie\", \"label\": 1}\n{\"text\": \"bad movie\", \"label\": 0}\n".to_vec();
    let test = b"{\"text\": \"fine\", \"label\": 1}\n".to_vec();
    let mut repos = HashMap::new();
    repos.insert(
        (RepoKind::Dataset, "tiny-org/reviews".into()),
        FakeRepo {
            sha: "1111111111111111111111111111111111111111".into(),
            files: vec![
                (".gitattributes".into(), b"*.parquet filter=lfs".to_vec()),
                ("README.md".into(), b"# reviews".to_vec()),
                ("data/train-00000-of-00001.jsonl".into(), train),
                ("data/test-00000-of-00001.jsonl".into(), test),
            ],
        },
    );
    let mut hub = FakeHub::serve(repos);
    std::env::set_var("HF_HOME", tmp.path().join("hf"));
    std::env::set_var("HF_ENDPOINT", &hub.endpoint);
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_HUB_CACHE");

    assert_eq!(Source::parse("tiny-org/reviews").unwrap(), Source::Hub("tiny-org/reviews".into()));
    assert_eq!(
        Source::parse("hf://datasets/tiny-org/reviews@main").unwrap(),
        Source::Hub("tiny-org/reviews@main".into())
    );

    let files = resolve_dataset("tiny-org/reviews", None).unwrap();
    assert_eq!(files.len(), 2);
    assert!(files[0].to_string_lossy().contains("datasets--tiny-org--reviews/snapshots"), "{files:?}");
    let opts = LoadOptions { split: Some("train".into()), ..LoadOptions::default() };
    let ds = Dataset::load("tiny-org/reviews", &opts).unwrap();
    assert_eq!((ds.records.len(), ds.labels.clone()), (2, vec!["0".to_string(), "1".to_string()]));
    let all = Dataset::load("tiny-org/reviews", &LoadOptions::default()).unwrap();
    assert_eq!(all.records.len(), 3);

    let err = Dataset::load("tiny-org/missing", &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("tiny-org/missing"), "{err}");

    // Offline: the cached snapshot serves, with no server.
    hub.stop();
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert_eq!(Dataset::load("tiny-org/reviews", &opts).unwrap().records.len(), 2);
    let err = Dataset::load("tiny-org/never", &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    std::env::remove_var("HF_HUB_OFFLINE");
}
