//! Drill records (raw JSON, and as a sealed object's zstd plaintext).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::format::drill::DrillRecord;

fuzz_target!(|data: &[u8]| {
    let r = vault::repo::decode_sealed_json::<DrillRecord>(data, "drills/fuzz")
        .ok()
        .or_else(|| serde_json::from_slice::<DrillRecord>(data).ok());
    let Some(r) = r else { return };
    let json = serde_json::to_vec(&r).expect("serializes");
    let back: DrillRecord = serde_json::from_slice(&json).expect("round trip");
    assert_eq!(back.snapshot, r.snapshot);
    assert_eq!(back.passed, r.passed);
});
