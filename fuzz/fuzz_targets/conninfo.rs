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
    let Ok(env) = conninfo_env(text) else {
        assert_eq!(shown, "<unparsable conninfo>");
        return;
    };
    if let Some((_, pw)) = env.iter().find(|(k, _)| k == "PGPASSWORD") {
        assert!(
            conninfo_has_password(text),
            "password not noticed in {text:?}"
        );
        // Redaction drops the password's value, not just its name (unless
        // the same text is in another setting or a variable's name).
        let elsewhere = env.iter().any(|(k, v)| {
            k != "PGPASSWORD" && (v.contains(pw.as_str()) || format!("{k}=").contains(pw.as_str()))
        });
        if pw.len() >= 4 && !pw.contains([' ', '=']) && !elsewhere {
            assert!(
                !shown.contains(pw.as_str()),
                "{shown:?} shows the password of {text:?}"
            );
        }
    }
});
