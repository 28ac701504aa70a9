//! Private keys on disk: PKCS#8 PEM, mode 0600, written once and never
//! overwritten. Public files (certificates, CRL, trust list, state) are
//! replaced atomically (temporary file, fsync, rename).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use estafette_spec::HpkeKeyPair;
use pkcs8::der::pem::LineEnding;
use pkcs8::der::{Decode, SecretDocument};
use pkcs8::{AlgorithmIdentifierRef, ObjectIdentifier, PrivateKeyInfo};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::PkiError;

/// id-X25519 (RFC 8410).
const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a secret file with mode 0600; refuses to replace an existing file.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::KeyExists(path.to_path_buf())
            } else {
                PkiError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    file.write_all(contents).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(())
}

/// Replaces a public file atomically: write a temporary file, fsync, rename.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(contents).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new random Ed25519 key, written to `path` as PKCS#8 PEM.
pub fn new_ed25519(path: &Path) -> Result<SigningKey, PkiError> {
    let key = SigningKey::generate(&mut OsRng);
    // PKCS#8 v1 (RFC 8410, no public key inside): what OpenSSL 3.0, and so
    // curl, reads; v2 with the public key it refuses.
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| PkiError::Key(format!("encoding Ed25519 key: {e}")))?;
    write_secret(path, pem.as_bytes())?;
    Ok(key)
}

/// Reads an Ed25519 PKCS#8 PEM key.
pub fn read_ed25519(path: &Path) -> Result<SigningKey, PkiError> {
    let pem = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        PkiError::Key(format!(
            "{}: not an Ed25519 PKCS#8 key: {e}",
            path.display()
        ))
    })
}

/// A new random X25519 (HPKE) key pair, written to `path` as PKCS#8 PEM.
pub fn new_hpke(path: &Path) -> Result<HpkeKeyPair, PkiError> {
    let mut ikm = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut OsRng, ikm.as_mut());
    let pair = HpkeKeyPair::derive(ikm.as_ref());
    let private = pair.private_bytes();
    // RFC 8410: privateKey is an OCTET STRING wrapping the 32-byte CurvePrivateKey.
    let mut wrapped = Zeroizing::new(vec![0x04, 0x20]);
    wrapped.extend_from_slice(private.as_ref());
    let info = PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: X25519_OID,
            parameters: None,
        },
        private_key: &wrapped,
        public_key: None,
    };
    let doc = SecretDocument::encode_msg(&info)
        .map_err(|e| PkiError::Key(format!("encoding X25519 key: {e}")))?;
    let pem = doc
        .to_pem("PRIVATE KEY", LineEnding::LF)
        .map_err(|e| PkiError::Key(format!("encoding X25519 key: {e}")))?;
    write_secret(path, pem.as_bytes())?;
    Ok(pair)
}

/// Reads an X25519 PKCS#8 PEM key.
pub fn read_hpke(path: &Path) -> Result<HpkeKeyPair, PkiError> {
    let bad = |what: &str| PkiError::Key(format!("{}: {what}", path.display()));
    let pem = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    let (_, doc) = SecretDocument::from_pem(&pem).map_err(|_| bad("not a PEM private key"))?;
    let info = PrivateKeyInfo::from_der(doc.as_bytes()).map_err(|_| bad("not PKCS#8"))?;
    if info.algorithm.oid != X25519_OID {
        return Err(bad("not an X25519 key"));
    }
    let raw: [u8; 32] = info
        .private_key
        .strip_prefix(&[0x04, 0x20])
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("X25519 key is not 32 bytes"))?;
    HpkeKeyPair::from_private_bytes(&raw).map_err(|_| bad("invalid X25519 key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_roundtrip_with_mode_0600_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = new_ed25519(&path).unwrap();
        assert_eq!(read_ed25519(&path).unwrap().to_bytes(), key.to_bytes());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(new_ed25519(&path), Err(PkiError::KeyExists(_))));
        assert_eq!(read_ed25519(&path).unwrap().to_bytes(), key.to_bytes());

        let hpath = dir.path().join("h.pem");
        let pair = new_hpke(&hpath).unwrap();
        assert_eq!(read_hpke(&hpath).unwrap().public, pair.public);
        assert!(read_hpke(&path).is_err());
    }
}
