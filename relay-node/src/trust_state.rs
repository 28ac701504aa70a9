//! The federation as this process sees it now: the trust list and the CRL
//! in force, re-read when their files change (looked at every second) or
//! at once on request (SIGHUP). Every part that checks a peer or a
//! signature asks here, so a revocation takes effect without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use estafette_pki::tls;
use estafette_spec::{Clock, NodeId, TrustList};
use tokio::sync::{Notify, watch};

use crate::config::PkiPaths;
use crate::node::NodeError;

/// How often the trust list and CRL files are checked for a new version.
pub const FEDERATION_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Size, modification time and inode of the trust list and CRL files: a
/// change of any means a new version (they are replaced atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamps(Vec<Option<(u64, i64, i64, u64)>>);

impl FileStamps {
    fn of(paths: &[&std::path::Path]) -> FileStamps {
        use std::os::unix::fs::MetadataExt;
        FileStamps(
            paths
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
                })
                .collect(),
        )
    }
}

/// The trust list and CRL in force, and their reload.
pub struct TrustState {
    trust_list_path: PathBuf,
    crl_path: PathBuf,
    root_key: ed25519_dalek::VerifyingKey,
    trust: RwLock<Arc<TrustList>>,
    trust_bytes: RwLock<Vec<u8>>,
    verifiers: Arc<tls::LiveVerifiers>,
    files: Mutex<Option<FileStamps>>,
    reload_now: Notify,
    /// Counts reloads that revoked something.
    revocations: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
}

impl TrustState {
    /// Reads and verifies the trust list and CRL named in `pki`.
    pub fn load(pki: &PkiPaths, clock: Arc<dyn Clock>) -> Result<Arc<TrustState>, NodeError> {
        let root = tls::load_certs(&pki.root_cert)?.remove(0);
        let root_key = root_public_key(&root)?;
        let trust_bytes = std::fs::read(&pki.trust_list).map_err(|source| {
            NodeError::Pki(estafette_pki::PkiError::Io {
                path: pki.trust_list.clone(),
                source,
            })
        })?;
        let trust = TrustList::verify(&trust_bytes, &root_key, clock.now()).map_err(|source| {
            NodeError::TrustList {
                path: pki.trust_list.display().to_string(),
                source,
            }
        })?;
        let verifiers = tls::LiveVerifiers::new(root, tls::load_crl(&pki.crl)?)?;
        let state = TrustState {
            trust_list_path: pki.trust_list.clone(),
            crl_path: pki.crl.clone(),
            root_key,
            trust: RwLock::new(Arc::new(trust)),
            trust_bytes: RwLock::new(trust_bytes),
            verifiers,
            files: Mutex::new(None),
            reload_now: Notify::new(),
            revocations: watch::channel(0).0,
            clock,
        };
        state.note_files();
        Ok(Arc::new(state))
    }

    /// The trust list in force.
    /// The signed trust list in force, as its file holds it (what a proof
    /// bundle carries).
    pub fn trust_list_bytes(&self) -> Vec<u8> {
        self.trust_bytes
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn trust(&self) -> Arc<TrustList> {
        match self.trust.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The federation root and the CRL in force, for TLS.
    pub fn verifiers(&self) -> Arc<tls::LiveVerifiers> {
        self.verifiers.clone()
    }

    /// Changes each time a reload revokes something: holders of
    /// connections then close the ones whose peer is revoked.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Re-reads the trust list and CRL at once (SIGHUP).
    pub fn reload_soon(&self) {
        self.reload_now.notify_one();
    }

    /// Whether the current CRL or trust list revokes the peer holding `cert`.
    pub fn is_revoked(&self, cert: &rustls_pki_types::CertificateDer<'_>) -> bool {
        self.verifiers.is_revoked(cert)
            || tls::node_id(cert).is_ok_and(|id: NodeId| self.trust().node(&id).is_none())
    }

    fn stamps(&self) -> FileStamps {
        FileStamps::of(&[&self.trust_list_path, &self.crl_path])
    }

    fn note_files(&self) {
        let stamps = self.stamps();
        if let Ok(mut s) = self.files.lock() {
            *s = Some(stamps);
        }
    }

    /// Looks at the files every [`FEDERATION_RELOAD_INTERVAL`] and reloads
    /// what changed, until `stopped` fires.
    pub async fn watch(self: Arc<Self>, stopped: Arc<Notify>) {
        let mut tick = tokio::time::interval(FEDERATION_RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = self.reload_now.notified() => true,
                _ = stopped.notified() => return,
            };
            let stamps = self.stamps();
            let changed = self
                .files
                .lock()
                .map(|s| s.as_ref() != Some(&stamps))
                .unwrap_or(true);
            if changed || forced {
                self.reload();
                if let Ok(mut s) = self.files.lock() {
                    *s = Some(stamps);
                }
            }
        }
    }

    /// Takes a newer trust list and CRL from disk (each only if it
    /// verifies); tells [`Self::revocations`] when something was revoked.
    pub fn reload(&self) {
        let mut revoked_something = false;
        match std::fs::read(&self.trust_list_path) {
            Ok(bytes)
                if !self
                    .trust_bytes
                    .read()
                    .map(|b| *b == bytes)
                    .unwrap_or(false) =>
            {
                match TrustList::verify_update(
                    &bytes,
                    &self.root_key,
                    self.clock.now(),
                    &self.trust(),
                ) {
                    Ok(list) => {
                        let more_revoked =
                            list.content().revoked.len() != self.trust().content().revoked.len();
                        tracing::info!(version = list.content().version, "trust list reloaded");
                        if let Ok(mut t) = self.trust.write() {
                            *t = Arc::new(list);
                        }
                        if let Ok(mut b) = self.trust_bytes.write() {
                            *b = bytes;
                        }
                        revoked_something |= more_revoked;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "new trust list refused; keeping the current one")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(path = %self.trust_list_path.display(), error = %e, "reading the trust list")
            }
        }
        match tls::load_crl(&self.crl_path).and_then(|crl| self.verifiers.update_crl(crl)) {
            Ok(true) => {
                tracing::info!("CRL reloaded");
                revoked_something = true;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "new CRL refused; keeping the current one"),
        }
        if revoked_something {
            self.revocations.send_modify(|n| *n += 1);
        }
    }
}

fn root_public_key(
    root: &rustls_pki_types::CertificateDer<'_>,
) -> Result<ed25519_dalek::VerifyingKey, NodeError> {
    let key = tls::ed25519_public_key(root).map_err(NodeError::Pki)?;
    ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| {
        NodeError::Pki(estafette_pki::PkiError::Certificate(
            "root key is not a valid Ed25519 key".into(),
        ))
    })
}
