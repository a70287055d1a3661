//! libpq conninfo strings (`dbname=app host=/run/postgresql password='…'`):
//! mapped to PG* variables, redacted for messages and snapshot headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault::settings::conninfo_has_password;
use vault::source::postgres::{conninfo_env, redacted};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let shown = redacted(text);
    assert!(!shown.contains("PGPASSWORD"));
    let Ok(env) = conninfo_env(text) else {
        return;
    };
    if let Some((_, pw)) = env.iter().find(|(k, _)| k == "PGPASSWORD") {
        assert!(
            conninfo_has_password(text),
            "password not noticed in {text:?}"
        );
        // Redaction drops the password's value, not just its name (unless
        // some other setting carries the same text).
        if pw.len() >= 4
            && !env
                .iter()
                .any(|(k, v)| k != "PGPASSWORD" && v.contains(pw.as_str()))
        {
            assert!(
                !shown.contains(pw.as_str()),
                "{shown:?} shows the password of {text:?}"
            );
        }
    }
});
