//! tunesmith's data pipeline: readers for every common fine-tuning format, schema detection into
//! one internal form, chat templates rendered like transformers, tokenization with correct label
//! masks, packing, batching, and dataset preparation (validation, dedup, splits, statistics).

pub mod augment;
pub mod batch;
pub mod clean;
pub mod dataset;
pub mod encode;
pub mod error;
pub mod example;
pub mod pack;
pub mod pairs;
pub mod prep;
pub mod read;
pub mod schema;
pub mod template;
pub mod tokenizer;
pub mod write;

pub use dataset::{Dataset, LoadOptions, Source};
pub use error::{DataError, Loc, Reject, RejectCounts, Result, RowError};
pub use example::{Example, Label, Message, Record, Role};
