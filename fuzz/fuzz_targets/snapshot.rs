//! Snapshot headers (raw JSON, and as a sealed object's zstd plaintext).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::format::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let s = vault::repo::decode_sealed_json::<Snapshot>(data, "snapshots/fuzz")
        .ok()
        .or_else(|| serde_json::from_slice::<Snapshot>(data).ok());
    let Some(s) = s else { return };
    let _ = s.group_key();
    let _ = s.is_complete();
    let _ = s.is_in_the_future(chrono::Utc::now());
    let json = serde_json::to_vec(&s).expect("serializes");
    let back: Snapshot = serde_json::from_slice(&json).expect("round trip");
    assert_eq!(back.root, s.root);
    assert_eq!(back.time, s.time);
});
