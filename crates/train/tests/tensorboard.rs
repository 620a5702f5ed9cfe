//! TensorBoard event files: TFRecord framing with masked CRC-32C, and records that decode back
//! (the files were also checked with tensorboard's own EventAccumulator; see the issue notes).

use tunesmith_train::tensorboard::{masked_crc, read_events, EventWriter};

#[test]
fn crc_is_crc32c_masked_as_tfrecord_does() {
    // CRC-32C("123456789") = 0xE3069283; TFRecord masks it as rotr15 + 0xa282ead8.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(masked_crc(b"123456789"), 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
}

#[test]
fn scalars_round_trip_through_an_event_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(tmp.path()).unwrap();
    w.scalars(1, &[("train/loss", 2.5), ("train/lr", 1e-4)]).unwrap();
    w.scalars(2, &[("train/loss", 2.0), ("skipped", f64::NAN)]).unwrap();
    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let s = events[1].summary.as_ref().unwrap();
    assert_eq!((events[1].step, s.value[0].tag.as_str(), s.value[0].simple_value), (1, "train/loss", 2.5));
    assert_eq!(events[2].summary.as_ref().unwrap().value.len(), 1, "non-finite values are not written");
    // A flipped byte is caught by the CRC.
    let mut bytes = std::fs::read(w.path()).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 1;
    std::fs::write(w.path(), bytes).unwrap();
    assert!(read_events(w.path()).is_err());
}
