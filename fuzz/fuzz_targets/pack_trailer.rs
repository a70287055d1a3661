//! A pack's decrypted plaintext: the trailer that lists its blobs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::format::pack::{ENTRY_LEN, decode_trailer, encode_trailer};

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = decode_trailer(data, "fuzz") else {
        return;
    };
    // Every blob lies before the first entry, inside the plaintext.
    let start = data.len() - 12 - entries.len() * ENTRY_LEN;
    for e in &entries {
        assert!(e.offset as usize + e.length as usize <= start);
    }
    // What decodes re-encodes to a trailer that decodes the same.
    let again = encode_trailer(&entries);
    let mut pack = data[..start].to_vec();
    pack.extend_from_slice(&again);
    assert_eq!(decode_trailer(&pack, "fuzz").expect("re-encoded"), entries);
});
