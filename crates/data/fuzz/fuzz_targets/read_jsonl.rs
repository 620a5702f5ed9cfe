#![no_main]
//! Fuzzes the jsonl reader and everything downstream of it.

use libfuzzer_sys::fuzz_target;
use tunesmith_data::read::Format;

fuzz_target!(|data: &[u8]| tunesmith_data_fuzz::exercise(Format::Jsonl, data));
