//! Test support shared by tunesmith's crates.

pub mod fake_hub;
