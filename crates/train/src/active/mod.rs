//! Active learning (`tunesmith data select`): acquisition strategies ([`strategy`]) and a
//! simulation of the labeling loop on a labeled set with hidden labels ([`simulate`]).

pub mod simulate;
pub mod strategy;

pub use strategy::{select, Strategy};
