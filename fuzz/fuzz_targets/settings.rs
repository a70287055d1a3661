//! The configuration file (`/etc/vault/vault.toml`): TOML, schema walk,
//! validation and line-precise problems. A secret pasted into it must never
//! be echoed back in a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::settings::Settings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Settings::from_toml(text, std::path::Path::new("/fuzz/vault.toml")) {
        Ok(s) => {
            let _ = s.retention.describe();
            let _ = s.retention.counts();
            let _ = s.backup.as_ref().map(|b| b.source_count());
        }
        Err(e) => {
            let shown = format!("{e}");
            for p in e.problems() {
                let _ = format!("{p}");
            }
            // An age secret key anywhere in the file is never repeated.
            for (i, _) in text.match_indices("AGE-SECRET-KEY-1") {
                let secret: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if secret.len() >= 60 {
                    assert!(!shown.contains(&secret), "secret echoed: {shown}");
                }
            }
        }
    }
});
