//! Key files on disk: read only when no one else can read or have written
//! them, written with mode 0600 and never over an existing file.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::CryptoError;

/// Reads a key file after checking the open file: no permission for group
/// or others, and owned by the caller or by root. (Root can read anyone's
/// 0600 file; a key another unprivileged user owns may have been written,
/// or be read, by that user, so it is refused.)
pub fn read_key_file(path: &Path) -> Result<Zeroizing<String>, crate::Error> {
    // Open first, then check the open file: no window to swap the file.
    let mut f = fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| crate::Error::io(path, e))?;
    check_key_file(
        path,
        meta.permissions().mode(),
        meta.uid(),
        nix::unistd::geteuid().as_raw(),
    )?;
    let mut text = Zeroizing::new(String::new());
    f.read_to_string(&mut text)
        .map_err(|e| crate::Error::io(path, e))?;
    Ok(text)
}

/// The checks [`read_key_file`] makes on an open file's mode and owner,
/// for a caller whose effective user id is `caller`.
fn check_key_file(path: &Path, mode: u32, owner: u32, caller: u32) -> Result<(), CryptoError> {
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    if owner != caller && owner != 0 {
        return Err(CryptoError::KeyFileNotOwned {
            path: path.to_owned(),
            owner,
            caller,
        });
    }
    Ok(())
}

/// Writes a new key file with mode 0600; refuses to replace an existing file.
pub fn write_key_file(path: &Path, contents: &str) -> Result<(), crate::Error> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::Error::io(path, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| crate::Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_owned_by_another_unprivileged_user_is_refused() {
        let path = Path::new("/etc/vault/writer.key");
        // Its owner reads it, and anyone reads a file root owns.
        check_key_file(path, 0o600, 1000, 1000).unwrap();
        check_key_file(path, 0o600, 0, 1000).unwrap();
        check_key_file(path, 0o400, 0, 0).unwrap();
        // Root (or anyone else) refuses another unprivileged user's file,
        // and the error names both users and the fix.
        for caller in [0, 1001] {
            let err = check_key_file(path, 0o600, 1000, caller).unwrap_err();
            assert!(
                matches!(err, CryptoError::KeyFileNotOwned { owner: 1000, caller: c, .. }
                    if c == caller),
                "{err}"
            );
            assert!(err.to_string().contains("chown"), "{err}");
        }
        assert!(matches!(
            check_key_file(path, 0o640, 1000, 1000),
            Err(CryptoError::InsecureKeyFile { mode: 0o640, .. })
        ));
    }

    #[test]
    fn root_refuses_a_0600_key_file_chowned_to_nobody() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test chowns a file and must run as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key_file(&path, "AGE-SECRET-KEY-1\n").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let err = read_key_file(&path).unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Crypto(CryptoError::KeyFileNotOwned { owner: 65534, .. })
            ),
            "{err}"
        );
        // Root's own key file still reads.
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        assert_eq!(&read_key_file(&path).unwrap()[..], "AGE-SECRET-KEY-1\n");
    }

    #[test]
    fn a_group_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key_file(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(crate::Error::Crypto(CryptoError::InsecureKeyFile {
                mode: 0o640,
                ..
            }))
        ));
    }
}
