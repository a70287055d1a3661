//! Keystores and truststores: backed up byte for byte, certificates' subject
//! and expiry recorded in the snapshot, and soon-expiring ones reported.

use std::fs;
use std::process::Command;

use crate::util::*;

fn make_cert(dir: &std::path::Path, name: &str, cn: &str, days: &str) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .args(["-days", days, "-keyout"])
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))
        .output()
        .expect("openssl is installed (scripts/install-test-deps.sh)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn certificate_expiry_is_recorded_and_soon_expiring_ones_are_reported() {
    let env = Env::new();
    let src = env.path("src");
    let tls = src.join("etc/tls");
    fs::create_dir_all(&tls).unwrap();
    make_cert(&tls, "soon", "soon.example.org", "10");
    make_cert(&tls, "later", "later.example.org", "400");
    write(&src.join("notes.txt"), b"no certificate here\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.backup(&[&src]);
    // The second run takes unchanged files from the cache, but keystores are
    // always re-read so every snapshot carries their certificates.
    env.backup(&[&src]);

    let out = env.vault(&["snapshots"], &env.writer_key, &["--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in v.as_array().unwrap() {
        let certs = s["snapshot"]["certificates"].as_array().unwrap();
        assert_eq!(certs.len(), 2, "{certs:?}");
        let text = serde_json::to_string(certs).unwrap();
        assert!(
            !text.contains("soon.pem") && !text.contains("etc/tls"),
            "no file names for the writer key: {text}"
        );
        let expiring = s["expiring_certificates"].as_array().unwrap();
        assert_eq!(expiring.len(), 1);
        assert!(
            expiring[0]["subject"]
                .as_str()
                .unwrap()
                .contains("soon.example.org")
        );
    }

    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--verify", "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expiring_certificates"].as_array().unwrap().len(), 1);
    let text = env.vault(&["restore"], &env.owner_key, &["latest", "--verify"]);
    assert_contains(
        &stdout(&text),
        "warning: certificate CN=soon.example.org expires",
    );

    // Restoring only a file that holds no certificate warns of none: the
    // snapshot records its certificates without their files' names, so a
    // partial restore checks none of them.
    let notes = src.join("notes.txt");
    let rel = notes.strip_prefix("/").unwrap().to_str().unwrap();
    let partial = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--verify", "--include", rel, "--json"],
    );
    assert_success(&partial);
    let v: serde_json::Value = serde_json::from_slice(&partial.stdout).unwrap();
    assert_eq!(v["report"]["files"], 1);
    assert!(v["expiring_certificates"].is_null(), "{v}");
    let partial = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--verify", "--include", rel],
    );
    assert_success(&partial);
    assert!(
        !stdout(&partial).contains("certificate"),
        "{}",
        stdout(&partial)
    );
    let target = env.path("partial");
    let partial = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--include",
            rel,
        ],
    );
    assert_success(&partial);
    assert!(
        !stdout(&partial).contains("certificate"),
        "{}",
        stdout(&partial)
    );

    let drill = env.vault(&["drill"], &env.owner_key, &["--json"]);
    assert_success(&drill);
    let d: serde_json::Value = serde_json::from_slice(&drill.stdout).unwrap();
    assert!(
        d["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["expiring_certificates"].as_array().unwrap().len() == 1)
    );

    // Byte for byte.
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let r = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(r.join("etc/tls/soon.key")).unwrap(),
        fs::read(tls.join("soon.key")).unwrap()
    );
}
