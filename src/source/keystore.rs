//! Certificates in keystores and truststores: files such as `.pem`, `.crt`,
//! `.jks` are backed up byte for byte like any file; where certificates
//! parse, their subject and expiry are recorded in the snapshot header so
//! that `vault snapshots` and drills can warn before they expire.
//!
//! PKCS#12 files (`.p12`, `.pfx`) keep their certificates encrypted under a
//! password vault does not have; they are stored but not inspected.

pub use crate::format::snapshot::CertInfo;

/// Largest file inspected for certificates.
pub const MAX_KEYSTORE: u64 = 1 << 20;

const EXTENSIONS: &[&str] = &[
    "pem",
    "crt",
    "cer",
    "der",
    "jks",
    "keystore",
    "truststore",
    "ts",
    "p12",
    "pfx",
    "key",
];

/// Whether a file name looks like a keystore or certificate file.
pub fn is_keystore_name(name: &[u8]) -> bool {
    // No allocation: the walk asks this of every file.
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => &name[dot + 1..],
        None => return false,
    };
    EXTENSIONS
        .iter()
        .any(|e| e.as_bytes().eq_ignore_ascii_case(ext))
}

/// Every certificate that parses in `data` (PEM, DER or JKS).
pub fn certificates(data: &[u8]) -> Vec<CertInfo> {
    let mut out = Vec::new();
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        for pem in x509_parser::pem::Pem::iter_from_buffer(data).flatten() {
            if pem.label.ends_with("CERTIFICATE") {
                out.extend(parse_der(&pem.contents));
            }
        }
    } else if data.starts_with(&[0xfe, 0xed, 0xfe, 0xed]) {
        for der in jks_certificates(data).unwrap_or_default() {
            out.extend(parse_der(der));
        }
    } else {
        out.extend(parse_der(data));
    }
    out
}

fn parse_der(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_after: chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)?,
    })
}

/// The DER certificates stored in a Java KeyStore (they are not encrypted;
/// only private keys are).
fn jks_certificates(data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader { data, pos: 4 };
    let version = r.u32()?;
    let count = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..count.min(10_000) {
        let tag = r.u32()?;
        r.utf()?; // alias
        r.take(8)?; // timestamp
        let certs = match tag {
            1 => {
                let key_len = r.u32()? as usize;
                r.take(key_len)?;
                r.u32()?
            }
            2 => 1,
            _ => return Some(out), // secret keys (JCEKS): stop here
        };
        for _ in 0..certs.min(100) {
            if version == 2 {
                r.utf()?; // certificate type, "X.509"
            }
            let len = r.u32()? as usize;
            out.push(r.take(len)?);
        }
    }
    Some(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn utf(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        self.take(n)
    }
}

/// Certificates in `certs` that expire before `now + days`.
pub fn expiring(
    certs: &[CertInfo],
    now: chrono::DateTime<chrono::Utc>,
    days: i64,
) -> Vec<CertInfo> {
    let limit = now + chrono::Duration::days(days);
    certs
        .iter()
        .filter(|c| c.not_after < limit)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = include_bytes!("../../fixtures/sample-server/opt/app/keystores/server.crt");

    fn der_of(pem: &[u8]) -> Vec<u8> {
        x509_parser::pem::Pem::iter_from_buffer(pem)
            .next()
            .unwrap()
            .unwrap()
            .contents
    }

    #[test]
    fn parses_pem_der_and_jks() {
        let from_pem = certificates(PEM);
        assert_eq!(from_pem.len(), 1);
        assert!(
            from_pem[0].subject.contains("app.example.org"),
            "{:?}",
            from_pem[0]
        );
        let der = der_of(PEM);
        assert_eq!(certificates(&der), from_pem);

        // A JKS (version 2) holding one trusted certificate entry.
        let mut jks = vec![0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        jks.extend_from_slice(&[0, 2]);
        jks.extend_from_slice(b"ca");
        jks.extend_from_slice(&[0; 8]);
        jks.extend_from_slice(&[0, 5]);
        jks.extend_from_slice(b"X.509");
        jks.extend_from_slice(&(der.len() as u32).to_be_bytes());
        jks.extend_from_slice(&der);
        jks.extend_from_slice(&[0; 20]);
        assert_eq!(certificates(&jks), from_pem);
        assert!(
            certificates(&jks[..30]).is_empty(),
            "truncated keystores are ignored"
        );
        assert!(certificates(b"not a certificate").is_empty());
    }

    #[test]
    fn expiry_window_and_names() {
        let c = certificates(PEM);
        let now = c[0].not_after - chrono::Duration::days(10);
        assert_eq!(expiring(&c, now, 30).len(), 1);
        assert!(expiring(&c, now, 5).is_empty());
        assert!(
            is_keystore_name(b"app.P12")
                && is_keystore_name(b"ca.pem")
                && !is_keystore_name(b"app.conf")
        );
        // The last extension counts, in any case, whatever bytes precede it.
        assert!(is_keystore_name(b"\xff\xfe.Key") && is_keystore_name(b".keystore"));
        assert!(is_keystore_name(b"old.conf.JKS") && !is_keystore_name(b"ca.pem.bak"));
        assert!(!is_keystore_name(b"pem") && !is_keystore_name(b"a.pe\xffm"));
        assert!(!is_keystore_name(b"a.") && !is_keystore_name(b""));
    }
}
