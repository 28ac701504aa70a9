//! The citizen desk: the gateway's side of registration, activation,
//! consent, contact changes and mandates. Requests come only from home
//! nodes (over QUIC, see `crate::node`) and carry the person's own identity
//! assertion, which the desk verifies itself: the audience must be the home
//! node that carried it, the level at least substantial, the assertion
//! fresh (at most five minutes), and its nonce never seen with another
//! assertion. No agency-facing path leads here.
//!
//! Every change is recorded with the digest of the assertion that
//! authorised it, and the holder can export that history. The person's own
//! settings are `person`, mandates and representation `representation`.

mod person;
mod representation;

use estafette_spec::citizen::{
    CitizenAction, CitizenReply, CitizenRequest, VERIFICATION_TOKEN_BYTES,
};
use estafette_spec::limits::MAX_ASSERTION_LIFETIME_S;
use estafette_spec::mandate::{Attestation, VerifiedAttestation};
use estafette_spec::trust::LevelOfAssurance;
use estafette_spec::{
    AssertionError, AssertionPolicy, Digest, IdentityClaims, IdentityProof, NodeId, ReasonCode,
    Recipient, Timestamp, TrustList,
};
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};

use crate::gateway::Gateway;
use crate::store::{RecordsError, WriteRecords};
use crate::texts;

/// The level of assurance every citizen request needs.
pub const MIN_LEVEL: LevelOfAssurance = LevelOfAssurance::Substantial;
/// How long after login a session may still ask questions that change
/// nothing (the home node's longest session).
pub const READ_SESSION_MAX_S: u64 = 12 * 3600;
/// Attempts at sending one verification e-mail.
pub const VERIFICATION_SEND_ATTEMPTS: u32 = 3;

fn refused(reason: ReasonCode, detail: impl Into<String>) -> CitizenReply {
    CitizenReply::Refused {
        reason,
        detail: detail.into(),
    }
}

/// A refusal on its way to becoming the reply (small, unlike a reply).
struct Refusal {
    reason: ReasonCode,
    detail: String,
}

impl Refusal {
    fn new(reason: ReasonCode, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<Refusal> for CitizenReply {
    fn from(r: Refusal) -> CitizenReply {
        refused(r.reason, r.detail)
    }
}

fn replayed() -> CitizenReply {
    refused(
        ReasonCode::Replayed,
        "this identity assertion's nonce was already used; log in again",
    )
}

fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Who asks, verified: the request's facts every change needs.
struct Asking {
    /// The home node that carried the request.
    home: NodeId,
    claims: IdentityClaims,
    /// The digest of the assertion, recorded with every change.
    digest: Digest,
    now: Timestamp,
}

impl Asking {
    /// Records the assertion's nonce; false if another assertion used it.
    fn use_nonce(&self, records: &mut dyn WriteRecords) -> Result<bool, RecordsError> {
        records.use_nonce(&self.claims.nonce, self.digest, self.claims.expires_at)
    }

    /// A history entry for `change`, authorised by this assertion.
    fn entry(
        &self,
        change: estafette_spec::citizen::Change,
    ) -> estafette_spec::citizen::ChangeEntry {
        estafette_spec::citizen::ChangeEntry {
            at: self.now,
            change,
            assertion_digest: Some(self.digest),
        }
    }
}

/// What a request proves besides the person's login.
#[derive(Default)]
struct Proofs {
    /// Linking: the second identity's claims and assertion digest.
    other: Option<(IdentityClaims, Digest)>,
    /// A legal representation: the court registry's attestation.
    attestation: Option<VerifiedAttestation>,
}

/// A verification e-mail to send once the change is committed.
struct VerificationMail {
    address: String,
    token: [u8; VERIFICATION_TOKEN_BYTES],
    language: String,
    inbox_url: String,
}

impl Gateway {
    /// Answers a citizen request carried by home node `home`.
    pub async fn citizen(&self, home: NodeId, request: CitizenRequest) -> CitizenReply {
        if let Err(e) = request.validate() {
            return refused(ReasonCode::Malformed, e.to_string());
        }
        let now = self.clock.now();
        if let CitizenAction::VerifyEmail { token } = &request.action {
            return self.verify_email(&home, token, now).await;
        }
        let trust = self.node.trust();
        let (claims, digest) = match self.verify_login(&home, &request, &trust) {
            Ok(verified) => verified,
            Err(refusal) => return refusal.into(),
        };
        if let CitizenAction::LetterEvidence { message } = &request.action {
            return self.letter_evidence(&home, &claims.subject, message);
        }
        let asking = Asking {
            home,
            claims,
            digest,
            now,
        };
        let proofs = match self.other_proofs(&asking, &request.action, &trust) {
            Ok(proofs) => proofs,
            Err(refusal) => return refusal.into(),
        };
        self.change(asking, request, proofs, trust).await
    }

    /// The person's proof of their login: the claims and the digest.
    fn verify_login(
        &self,
        home: &NodeId,
        request: &CitizenRequest,
        trust: &TrustList,
    ) -> Result<(IdentityClaims, Digest), Refusal> {
        let Some(proof) = &request.identity else {
            return Err(Refusal::new(
                ReasonCode::Malformed,
                "this request needs the person's proof of their login",
            ));
        };
        let policy = self.assertion_policy(home);
        // Questions that change nothing (the history, mandates, clients, an
        // access check) and a preference (the language) may come during a
        // session of up to READ_SESSION_MAX_S after its login; changes need
        // a fresh login.
        let read_only = !request.action.needs_fresh_login();
        let verified = match proof.verify(trust, &policy) {
            Err(AssertionError::Expired(expired_at))
                if read_only && policy.now < expired_at.plus_s(READ_SESSION_MAX_S) =>
            {
                let at_expiry = AssertionPolicy {
                    now: expired_at.minus_s(1),
                    ..policy.clone()
                };
                proof.verify(trust, &at_expiry)
            }
            other => other,
        }
        .map_err(|e| Refusal::new(e.reason(), e.to_string()))?;
        // An ID token may live an hour and a provider's session longer:
        // what counts for a change is when the person last logged in.
        let login_age = policy.now.0.saturating_sub(verified.authenticated_at.0);
        if !read_only && login_age > MAX_ASSERTION_LIFETIME_S {
            return Err(Refusal::new(
                ReasonCode::Expired,
                format!(
                    "a change needs a login of at most {MAX_ASSERTION_LIFETIME_S} s ago; this one is {login_age} s old: log in again"
                ),
            ));
        }
        Ok((verified.claims, verified.digest))
    }

    /// What an assertion for `home` must meet. Freshness is against the
    /// federation's time (the node's clock), which the identity provider shares.
    fn assertion_policy(&self, home: &NodeId) -> AssertionPolicy {
        AssertionPolicy {
            audience: home.clone(),
            min_level: MIN_LEVEL,
            now: self.node.core.clock.now(),
        }
    }

    /// Checks what the action brings besides the login: a known sender, a
    /// second identity's assertion, a court's attestation.
    fn other_proofs(
        &self,
        asking: &Asking,
        action: &CitizenAction,
        trust: &TrustList,
    ) -> Result<Proofs, Refusal> {
        match action {
            CitizenAction::SetConsent { sender, .. } if trust.agency(sender).is_none() => {
                Err(Refusal::new(
                    ReasonCode::UnknownSigner,
                    format!("there is no agency with OIN {sender} in the federation"),
                ))
            }
            CitizenAction::Link { other } => Ok(Proofs {
                other: Some(self.second_identity(asking, other, trust)?),
                ..Proofs::default()
            }),
            CitizenAction::RegisterLegalRepresentation { attestation, .. } => {
                match Attestation::verify(attestation, trust, asking.now) {
                    Ok(v) => Ok(Proofs {
                        attestation: Some(v),
                        ..Proofs::default()
                    }),
                    Err(e) => Err(Refusal::new(e.reason(), e.to_string())),
                }
            }
            _ => Ok(Proofs::default()),
        }
    }

    /// Linking: the second identity's proof, checked as the first, and
    /// for the same person.
    fn second_identity(
        &self,
        asking: &Asking,
        other: &IdentityProof,
        trust: &TrustList,
    ) -> Result<(IdentityClaims, Digest), Refusal> {
        let policy = self.assertion_policy(&asking.home);
        match other.verify(trust, &policy) {
            Ok(v) if v.claims.subject == asking.claims.subject => Err(Refusal::new(
                ReasonCode::Malformed,
                "both assertions are for the same identity; log in with the other one",
            )),
            Ok(v) => match estafette_spec::identity::same_person(&asking.claims, &v.claims) {
                Ok(_) => Ok((v.claims, v.digest)),
                Err(mismatch) => Err(Refusal::new(
                    ReasonCode::IdentityMismatch,
                    format!("the two logins are not for the same person: {mismatch}"),
                )),
            },
            Err(e) => Err(Refusal::new(e.reason(), format!("the second login: {e}"))),
        }
    }

    /// Applies the request in one transaction, then sends the verification
    /// e-mail it asks for (after the commit).
    async fn change(
        &self,
        asking: Asking,
        request: CitizenRequest,
        proofs: Proofs,
        trust: std::sync::Arc<TrustList>,
    ) -> CitizenReply {
        let mut token = [0u8; VERIFICATION_TOKEN_BYTES];
        OsRng.fill_bytes(&mut token);
        let action = request.action;
        let inbox_url = request.inbox_url;
        let outcome = self
            .in_transaction(move |records| {
                if let Some(reply) = representation::mandate_action(
                    records,
                    &asking,
                    &action,
                    proofs.attestation.as_ref(),
                    &trust,
                )? {
                    return Ok((reply, None));
                }
                person::apply(records, &asking, proofs.other, action, inbox_url, token)
            })
            .await;
        let (reply, mail) = match outcome {
            Ok(outcome) => outcome,
            Err(refusal) => return refusal,
        };
        if let Some(mail) = mail {
            self.send_verification(mail);
        }
        reply
    }

    /// The evidence of a letter of the person's, if their inbox is at
    /// `home` and `home` consigned that letter.
    fn letter_evidence(
        &self,
        home: &NodeId,
        subject: &Recipient,
        message: &estafette_spec::MessageId,
    ) -> CitizenReply {
        let storage = |e: RecordsError| refused(ReasonCode::StorageFailure, e.to_string());
        let found = self.records().read().and_then(|records| {
            let person = records.person_entry(subject)?.map(|(_, p)| p);
            Ok((person, records.evidence_for(message)?))
        });
        let (person, all) = match found {
            Ok(found) => found,
            Err(e) => return storage(e),
        };
        let mine = person.is_some_and(|p| p.inbox.is_some_and(|i| &i.home_node == home));
        let consigned_here = all.iter().any(|b| {
            estafette_spec::Evidence::read_stored(b).is_ok_and(|v| {
                v.record.event == estafette_spec::EvidenceEvent::ContentConsignment
                    && &v.record.issuer == home
            })
        });
        if !mine || !consigned_here {
            return refused(ReasonCode::NotForThisNode, "no such letter of yours");
        }
        CitizenReply::Evidence(
            estafette_spec::Evidence::order_chain(all, &self.node.trust())
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
        )
    }

    fn send_verification(&self, mail: VerificationMail) {
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            let link = format!(
                "{}/verify-email?token={}",
                mail.inbox_url.trim_end_matches('/'),
                estafette_spec::bytes::Hex(&mail.token)
            );
            let message = texts::for_language(&mail.language).verification(&link);
            for attempt in 1..=VERIFICATION_SEND_ATTEMPTS {
                match notifier.send(&mail.address, &message).await {
                    Ok(()) => return,
                    Err(e @ crate::notify::NotifyError::Permanent(_)) => {
                        tracing::info!(smtp = e.log_code(), "verification e-mail refused");
                        return;
                    }
                    Err(e @ crate::notify::NotifyError::Temporary(_)) => {
                        tracing::info!(
                            smtp = e.log_code(),
                            attempt,
                            "verification e-mail will be retried"
                        );
                        tokio::time::sleep(std::time::Duration::from_secs(2 << attempt)).await;
                    }
                }
            }
        });
    }

    async fn verify_email(&self, home: &NodeId, token: &[u8], now: Timestamp) -> CitizenReply {
        let digest = token_digest(token);
        let home = home.clone();
        self.in_transaction(move |records| person::apply_verification(records, &home, digest, now))
            .await
            .unwrap_or_else(|refusal| refusal)
    }

    /// Runs `f` in one transaction of the records (committed before its
    /// answer is given); a storage failure becomes a refusal.
    async fn in_transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn WriteRecords) -> Result<T, RecordsError> + Send + 'static,
    ) -> Result<T, CitizenReply> {
        self.records().transact(f).await.map_err(|e| {
            tracing::error!(error = %e, "citizen request not stored");
            refused(
                ReasonCode::StorageFailure,
                "could not store the change; try again",
            )
        })
    }
}
