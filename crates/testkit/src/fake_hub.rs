//! A local HTTP server that imitates the Hugging Face Hub closely enough for `hf-hub`: the repo
//! info API (`/api/models/<id>/revision/<rev>`, `/api/datasets/...`) and file downloads
//! (`/<id>/resolve/<rev>/<file>`, `/datasets/<id>/resolve/...`) with range requests, ETag and
//! X-Repo-Commit headers. Tests point HF_ENDPOINT at it: this machine has no internet.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

/// One repository: its commit sha and files (name, bytes).
#[derive(Debug, Clone)]
pub struct FakeRepo {
    /// The commit the repo is at (40 hex digits).
    pub sha: String,
    /// Files by path inside the repo.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Whether a repo is a model or a dataset (they live under different URL prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoKind {
    /// A model repo.
    Model,
    /// A dataset repo.
    Dataset,
}

/// A running fake Hub; it stops when dropped.
pub struct FakeHub {
    /// The endpoint to put in HF_ENDPOINT.
    pub endpoint: String,
    server: Arc<tiny_http::Server>,
    handle: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Serves `repos` on a free local port.
    pub fn serve(repos: HashMap<(RepoKind, String), FakeRepo>) -> FakeHub {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a local port"));
        let endpoint = format!("http://{}", server.server_addr().to_ip().expect("an IP address"));
        let s = server.clone();
        let handle = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let resp = respond(&repos, &req);
                let _ = req.respond(resp);
            }
        });
        FakeHub { endpoint, server, handle: Some(handle) }
    }

    /// Stops serving (later requests fail to connect).
    pub fn stop(&mut self) {
        self.server.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

fn not_found(body: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_data(body.as_bytes().to_vec()).with_status_code(404)
}

fn respond(
    repos: &HashMap<(RepoKind, String), FakeRepo>,
    req: &tiny_http::Request,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let url = req.url().to_string();
    let range = req.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.as_str().to_string());
    for (kind, prefix) in [(RepoKind::Model, "/api/models/"), (RepoKind::Dataset, "/api/datasets/")] {
        if let Some(rest) = url.strip_prefix(prefix) {
            let id = rest.split("/revision/").next().unwrap_or("");
            return match repos.get(&(kind, id.to_string())) {
                Some(repo) => {
                    let siblings: Vec<_> =
                        repo.files.iter().map(|(n, _)| serde_json::json!({"rfilename": n})).collect();
                    let body = serde_json::json!({"id": id, "sha": repo.sha, "siblings": siblings}).to_string();
                    tiny_http::Response::from_data(body.into_bytes())
                        .with_header(header("Content-Type", "application/json"))
                }
                None => not_found("{\"error\":\"Repository not found\"}"),
            };
        }
    }
    let (kind, path) = match url.strip_prefix("/datasets/") {
        Some(p) => (RepoKind::Dataset, p),
        None => (RepoKind::Model, url.trim_start_matches('/')),
    };
    let Some((id, file)) = path.split_once("/resolve/") else {
        return not_found("not found");
    };
    let file = file.split_once('/').map(|(_, f)| f).unwrap_or("");
    let Some((sha, data)) = repos
        .get(&(kind, id.to_string()))
        .and_then(|r| r.files.iter().find(|(n, _)| n == file).map(|(_, d)| (&r.sha, d)))
    else {
        return not_found("Entry not found");
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0)
        .min(data.len());
    let end = range
        .as_deref()
        .and_then(|r| r.split('-').nth(1))
        .and_then(|s| s.parse::<usize>().ok())
        .map_or(data.len(), |e| (e + 1).min(data.len()));
    let etag = format!("\"{:x}-{}\"", data.len(), file.len());
    tiny_http::Response::from_data(data[start..end.max(start)].to_vec())
        .with_status_code(if range.is_some() { 206 } else { 200 })
        .with_header(header("Content-Range", &format!("bytes {start}-{}/{}", end.saturating_sub(1), data.len())))
        .with_header(header("ETag", &etag))
        .with_header(header("X-Repo-Commit", sha))
}
