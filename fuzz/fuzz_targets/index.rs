//! Index files: the JSON document (raw, and as a sealed object's zstd
//! plaintext), then the in-memory index built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::format::index::{Index, IndexFile};

fuzz_target!(|data: &[u8]| {
    let file = vault::repo::decode_sealed_json::<IndexFile>(data, "index/fuzz")
        .ok()
        .or_else(|| serde_json::from_slice::<IndexFile>(data).ok());
    let Some(file) = file else { return };
    let mut index = Index::default();
    for p in &file.packs {
        index.add_pack(p);
    }
    index.finish();
    for p in &file.packs {
        for b in &p.blobs {
            // Every listed location is found, whatever else claims the blob.
            assert!(
                index
                    .locations(&b.id)
                    .any(|l| l.pack == p.id && l.offset == b.offset)
            );
            let _ = index.agreed_raw_length(&b.id);
        }
    }
    let keep = file.packs.first().map(|p| p.id);
    index.retain_packs(|p| Some(*p) == keep);
    for (id, loc) in index.blobs() {
        assert_eq!(Some(loc.pack), keep);
        assert!(index.contains(&id));
    }
    let _ = serde_json::to_vec(&file).expect("serializes");
});
