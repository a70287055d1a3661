//! The plaintext `config` object: every field range-checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = vault::repo::parse_config(data) else {
        return;
    };
    assert_eq!(c.version, vault::format::config::FORMAT_VERSION);
    assert!((1 << 20..=1 << 30).contains(&c.pack_size));
    assert!((1..=22).contains(&c.compression_level));
    assert!(c.chunker.validate().is_ok());
    let json = serde_json::to_vec_pretty(&c).expect("serializes");
    vault::repo::parse_config(&json).expect("what parses round-trips");
});
