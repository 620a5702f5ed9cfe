//! Verifiable rewards for GRPO (`task.rewards`): built-in functions of a completion and the
//! example's reference answer, and an external command for anything else.
//!
//! - `gsm8k`: 1 when the completion's final number (after `####`, else its last number) equals the
//!   reference's, as GSM8K is scored; else 0.
//! - `regex:PATTERN`: 1 when the pattern matches somewhere in the completion.
//! - `length:MIN-MAX`: 1 when the completion has MIN to MAX characters.
//! - `json`: 1 when the completion (trimmed) is valid JSON.
//! - `command:CMD`: runs `sh -c CMD` once per batch; it reads one JSON object per completion on
//!   stdin (`{"prompt", "completion", "reference"}`) and writes one number per line on stdout (or
//!   `{"reward": x}`, or `nan` when it cannot score one), in the same order. A failing command,
//!   or a wrong number of lines, stops the run with its stderr; a `nan` makes the step's loss NaN,
//!   which `train.on_nan` handles as in any other run.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::error::{Result, TrainError};

/// One reward function.
#[derive(Debug, Clone)]
pub enum RewardFn {
    /// GSM8K final-answer exact match.
    Gsm8k,
    /// A regular expression that must match.
    Regex(regex::Regex),
    /// Character-length bounds.
    Length {
        /// Fewest characters.
        min: usize,
        /// Most characters.
        max: usize,
    },
    /// Valid JSON.
    Json,
    /// An external command (the plugin interface).
    Command(String),
}

/// What a reward function scores: the prompt's text, a completion and the reference answer.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    /// The prompt as text.
    pub prompt: &'a str,
    /// The completion as text.
    pub completion: &'a str,
    /// The reference answer (the dataset's assistant turn), possibly empty.
    pub reference: &'a str,
}

impl RewardFn {
    /// Parses a `task.rewards` entry.
    pub fn parse(spec: &str) -> std::result::Result<RewardFn, String> {
        let (name, arg) = spec.split_once(':').map_or((spec, None), |(a, b)| (a, Some(b)));
        match (name, arg) {
            ("gsm8k", None) => Ok(RewardFn::Gsm8k),
            ("json", None) => Ok(RewardFn::Json),
            ("regex", Some(p)) => {
                regex::Regex::new(p).map(RewardFn::Regex).map_err(|e| format!("\"{spec}\": bad pattern: {e}"))
            }
            ("length", Some(range)) => {
                let parsed =
                    range.split_once('-').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                match parsed {
                    Some((min, max)) if min <= max => Ok(RewardFn::Length { min, max }),
                    _ => Err(format!("\"{spec}\": use length:MIN-MAX with MIN <= MAX, e.g. length:20-400")),
                }
            }
            ("command", Some(cmd)) if !cmd.trim().is_empty() => Ok(RewardFn::Command(cmd.to_string())),
            _ => {
                Err(format!("unknown reward \"{spec}\"; use gsm8k, json, regex:PATTERN, length:MIN-MAX or command:CMD"))
            }
        }
    }

    /// A short name for metrics (`rewards/<name>`).
    pub fn name(&self) -> String {
        match self {
            RewardFn::Gsm8k => "gsm8k".into(),
            RewardFn::Regex(_) => "regex".into(),
            RewardFn::Length { .. } => "length".into(),
            RewardFn::Json => "json".into(),
            RewardFn::Command(_) => "command".into(),
        }
    }

    /// The reward of every item.
    pub fn score(&self, items: &[Scored<'_>]) -> Result<Vec<f64>> {
        let one = |b: bool| if b { 1.0 } else { 0.0 };
        Ok(match self {
            RewardFn::Gsm8k => items
                .iter()
                .map(|s| {
                    let want = tunesmith_eval::gsm8k::extract_answer(s.reference);
                    one(want.is_some() && tunesmith_eval::gsm8k::extract_answer(s.completion) == want)
                })
                .collect(),
            RewardFn::Regex(re) => items.iter().map(|s| one(re.is_match(s.completion))).collect(),
            RewardFn::Length { min, max } => {
                items.iter().map(|s| one((*min..=*max).contains(&s.completion.chars().count()))).collect()
            }
            RewardFn::Json => {
                items.iter().map(|s| one(serde_json::from_str::<Value>(s.completion.trim()).is_ok())).collect()
            }
            RewardFn::Command(cmd) => run_command(cmd, items)?,
        })
    }
}

fn run_command(cmd: &str, items: &[Scored<'_>]) -> Result<Vec<f64>> {
    let fail = |why: String| TrainError::Config(format!("task.rewards command \"{cmd}\": {why}"));
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    let mut input = String::new();
    for s in items {
        input.push_str(&json!({"prompt": s.prompt, "completion": s.completion, "reference": s.reference}).to_string());
        input.push('\n');
    }
    // Write from another thread so that a command that answers while reading cannot deadlock.
    let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(fail(format!("exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rewards: Vec<f64> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            // "nan": a reward the command could not compute. The step's loss becomes NaN and
            // train.on_nan decides (stop with the last good checkpoint kept, or skip).
            if l.trim().eq_ignore_ascii_case("nan") {
                return Ok(f64::NAN);
            }
            let v: Value = serde_json::from_str(l.trim()).map_err(|e| fail(format!("line {}: {e}: {l}", i + 1)))?;
            v.as_f64()
                .or_else(|| v["reward"].as_f64())
                .ok_or_else(|| fail(format!("line {}: expected a number, nan or {{\"reward\": x}}, got {l}", i + 1)))
        })
        .collect::<Result<_>>()?;
    if rewards.len() != items.len() {
        return Err(fail(format!("wrote {} rewards for {} completions", rewards.len(), items.len())));
    }
    Ok(rewards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<'a>(completions: &'a [&'a str], reference: &'a str) -> Vec<Scored<'a>> {
        completions.iter().map(|c| Scored { prompt: "p", completion: c, reference }).collect()
    }

    #[test]
    fn built_in_rewards() {
        let gsm = RewardFn::parse("gsm8k").unwrap();
        let got =
            gsm.score(&items(&["so 72 clips\n#### 72", "the answer is 72", "#### 71", "none"], "... #### 72")).unwrap();
        assert_eq!(got, vec![1.0, 1.0, 0.0, 0.0]);
        let re = RewardFn::parse(r"regex:^<think>.*</think>").unwrap();
        assert_eq!(re.score(&items(&["<think>a</think> 4", "4"], "")).unwrap(), vec![1.0, 0.0]);
        let len = RewardFn::parse("length:2-4").unwrap();
        assert_eq!(len.score(&items(&["a", "abc", "abcde"], "")).unwrap(), vec![0.0, 1.0, 0.0]);
        let js = RewardFn::parse("json").unwrap();
        assert_eq!(js.score(&items(&[" {\"a\": 1} ", "{a: 1}"], "")).unwrap(), vec![1.0, 0.0]);
        for bad in ["gsm9k", "length:5", "length:9-2", "regex:(", "command:"] {
            assert!(RewardFn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_rewards_read_jsonl_and_write_one_line_each() {
        // The reward is the completion's length, computed by an external program.
        let cmd =
            RewardFn::parse(r#"command:sed 's/.*"completion":"\([^"]*\)".*/\1/' | awk '{print length($0)}'"#).unwrap();
        assert_eq!(cmd.score(&items(&["ab", "abcd"], "")).unwrap(), vec![2.0, 4.0]);
        let wrong = RewardFn::parse("command:echo 1").unwrap();
        let e = wrong.score(&items(&["a", "b"], "")).unwrap_err().to_string();
        assert!(e.contains("wrote 1 rewards for 2 completions"), "{e}");
        let failing = RewardFn::parse("command:echo oops >&2; exit 3").unwrap();
        let e = failing.score(&items(&["a"], "")).unwrap_err().to_string();
        assert!(e.contains("oops") && e.contains("exit"), "{e}");
    }
}
