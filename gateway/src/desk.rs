//! The citizen desk: the gateway's side of registration, activation,
//! consent and contact changes. Requests come only from home nodes (over
//! QUIC, see `estafette_relay::Node::citizen_request`) and carry the
//! person's own identity assertion, which the desk verifies itself: the
//! audience must be the home node that carried it, the level at least
//! substantial, the assertion fresh (at most five minutes), and its nonce
//! never seen with another assertion. No agency-facing path leads here.
//!
//! Every change is recorded with the digest of the assertion that
//! authorised it, and the holder can export that history.

use estafette_relay::store::{Op, StoreError};
use estafette_spec::citizen::{
    Change, ChangeEntry, ChannelKind, ChannelState, CitizenAction, CitizenReply, CitizenRequest,
    MAX_CONSENTS, MAX_HISTORY_ENTRIES, VERIFICATION_TOKEN_BYTES,
};
use estafette_spec::trust::LevelOfAssurance;
use estafette_spec::{
    AssertionError, AssertionPolicy, Digest, IdentityAssertion, IdentityClaims, InboxId, NodeId,
    ReasonCode, Recipient, Timestamp,
};
use rand_core::{OsRng, RngCore};
use redb::ReadableTable;
use sha2::{Digest as _, Sha256};

use crate::gateway::Gateway;
use crate::mandates;
use crate::monitor::DEFAULT_INBOX_URL;
use crate::registry::{
    self, ContactChannel, EMAIL_TOKEN_LIFETIME_S, EMAIL_TOKENS, InboxLocation, NONCES, PersonRecord,
};
use crate::texts;
use estafette_spec::TrustList;
use estafette_spec::citizen::{AccessDecision, ClientView};
use estafette_spec::mandate::{
    Attestation, Mandate, MandateId, MandateKind, Rights, VerifiedAttestation,
};

/// The level of assurance every citizen request needs.
pub const MIN_LEVEL: LevelOfAssurance = LevelOfAssurance::Substantial;
/// How long after login a session may still ask questions that change
/// nothing (the home node's longest session).
pub const READ_SESSION_MAX_S: u64 = 12 * 3600;
/// Attempts at sending one verification e-mail.
pub const VERIFICATION_SEND_ATTEMPTS: u32 = 3;

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn refused(reason: ReasonCode, detail: impl Into<String>) -> CitizenReply {
    CitizenReply::Refused {
        reason,
        detail: detail.into(),
    }
}

fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
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
        let Some(assertion) = request.assertion else {
            return refused(
                ReasonCode::Malformed,
                "this request needs the person's identity assertion",
            );
        };
        let trust = self.node.trust();
        // Freshness is against the wall clock: the identity provider's clock.
        let policy = AssertionPolicy {
            audience: home.clone(),
            min_level: MIN_LEVEL,
            now: estafette_pki::now(),
        };
        // Questions that change nothing (the history, mandates, clients, an
        // access check) may come during a session of up to
        // READ_SESSION_MAX_S after its login; changes need a fresh login.
        let read_only = !request.action.is_change();
        let verified = match IdentityAssertion::verify(&assertion, &trust, &policy) {
            Err(AssertionError::Expired(expired_at))
                if read_only && policy.now < expired_at.plus_s(READ_SESSION_MAX_S) =>
            {
                let at_expiry = AssertionPolicy {
                    now: expired_at.minus_s(1),
                    ..policy.clone()
                };
                IdentityAssertion::verify(&assertion, &trust, &at_expiry)
            }
            other => other,
        };
        let verified = match verified {
            Ok(v) => v,
            Err(e) => return refused(e.reason(), e.to_string()),
        };
        if let CitizenAction::LetterEvidence { message } = &request.action {
            return self.letter_evidence(&home, &verified.claims.subject, message);
        }
        if let CitizenAction::SetConsent { sender, .. } = &request.action
            && trust.agency(sender).is_none()
        {
            return refused(
                ReasonCode::UnknownSigner,
                format!("there is no agency with OIN {sender} in the federation"),
            );
        }
        // Linking: the second identity's assertion, checked the same way.
        let other = match &request.action {
            CitizenAction::Link { other } => {
                match IdentityAssertion::verify(other, &trust, &policy) {
                    Ok(v) if v.claims.subject == verified.claims.subject => {
                        return refused(
                            ReasonCode::Malformed,
                            "both assertions are for the same identity; log in with the other one",
                        );
                    }
                    Ok(v) => {
                        match estafette_spec::identity::same_person(&verified.claims, &v.claims) {
                            Ok(_) => Some((v.claims, v.digest)),
                            Err(mismatch) => {
                                return refused(
                                    ReasonCode::IdentityMismatch,
                                    format!(
                                        "the two logins are not for the same person: {mismatch}"
                                    ),
                                );
                            }
                        }
                    }
                    Err(e) => return refused(e.reason(), format!("the second login: {e}")),
                }
            }
            _ => None,
        };
        // A legal representation: the court registry's attestation.
        let attestation = match &request.action {
            CitizenAction::RegisterLegalRepresentation { attestation, .. } => {
                match Attestation::verify(attestation, &trust, now) {
                    Ok(v) => Some(v),
                    Err(e) => return refused(e.reason(), e.to_string()),
                }
            }
            _ => None,
        };
        let mut token = [0u8; VERIFICATION_TOKEN_BYTES];
        OsRng.fill_bytes(&mut token);
        let action = request.action;
        let inbox_url = request.inbox_url;
        let digest = verified.digest;
        let claims = verified.claims;
        let trust = trust.clone();
        let outcome = self
            .in_transaction(move |txn| {
                if let Some(reply) = mandate_action(
                    txn,
                    &home,
                    &claims,
                    digest,
                    &action,
                    attestation.as_ref(),
                    now,
                    &trust,
                )? {
                    return Ok((reply, None));
                }
                apply(
                    txn, &home, &claims, digest, other, action, inbox_url, token, now,
                )
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
        let db = self.node.store().database();
        let mine = match registry::lookup(db, subject) {
            Ok(Some(p)) => p.inbox.is_some_and(|i| &i.home_node == home),
            Ok(None) => false,
            Err(e) => return refused(ReasonCode::StorageFailure, e.to_string()),
        };
        let all = match self.node.store().evidence_for(message) {
            Ok(all) => all,
            Err(e) => return refused(ReasonCode::StorageFailure, e.to_string()),
        };
        let trust = self.node.trust();
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
            estafette_spec::Evidence::order_chain(all, &trust)
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
                hex(&mail.token)
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
        self.in_transaction(move |txn| apply_verification(txn, &home, digest, now))
            .await
            .unwrap_or_else(|refusal| refusal)
    }

    /// Runs `f` in one transaction of the store (committed before its
    /// answer is given); a storage failure becomes a refusal.
    async fn in_transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CitizenReply> {
        let failed = || {
            refused(
                ReasonCode::StorageFailure,
                "could not store the change; try again",
            )
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op = Op::Apply(Box::new(move |_tables, txn| {
            let _ = tx.send(f(txn)?);
            Ok(())
        }));
        if let Err(e) = self.node.store().write(op).await {
            tracing::error!(error = %e, "citizen request not stored");
            return Err(failed());
        }
        rx.await.map_err(|_| failed())
    }
}

/// The mandate actions: granting, accepting, revoking, legal
/// representation, and what a representative may see. `None`: not one of
/// these. Refusals write nothing.
#[allow(clippy::too_many_arguments)]
fn mandate_action(
    txn: &redb::WriteTransaction,
    home: &NodeId,
    claims: &IdentityClaims,
    digest: Digest,
    action: &CitizenAction,
    attestation: Option<&VerifiedAttestation>,
    now: Timestamp,
    trust: &TrustList,
) -> Result<Option<CitizenReply>, StoreError> {
    let is_mandate_action = matches!(
        action,
        CitizenAction::GrantMandate { .. }
            | CitizenAction::AcceptMandate { .. }
            | CitizenAction::RevokeMandate { .. }
            | CitizenAction::RegisterLegalRepresentation { .. }
            | CitizenAction::Mandates
            | CitizenAction::Clients
            | CitizenAction::CheckAccess { .. }
            | CitizenAction::SetClientConsent { .. }
    );
    if !is_mandate_action {
        return Ok(None);
    }
    if !use_nonce(txn, claims, digest)? {
        return Ok(Some(replayed()));
    }
    // The person's one entry (a linked identity acts for it).
    let me = match registry::resolve_person(txn, &claims.subject)? {
        Some((key, _)) => key,
        None => claims.subject.clone(),
    };
    let is_me = |r: &Recipient| -> Result<bool, StoreError> {
        Ok(r == &me || registry::resolve_person(txn, r)?.is_some_and(|(key, _)| key == me))
    };
    let entry = |change: Change| ChangeEntry {
        at: now,
        change,
        assertion_digest: Some(digest),
    };
    let reply = match action {
        CitizenAction::GrantMandate { grant } => {
            if registry::resolve_person(txn, &me)?.is_none() {
                return Ok(Some(refused(
                    ReasonCode::NotRegistered,
                    "register first: a mandate is about your inbox",
                )));
            }
            if is_me(&grant.representative.person)? {
                return Ok(Some(refused(
                    ReasonCode::Malformed,
                    "you cannot be your own representative",
                )));
            }
            let m = Mandate {
                id: MandateId::random(&mut OsRng),
                kind: MandateKind::Voluntary,
                holder: me.clone(),
                representative: grant.representative.clone(),
                scope: grant.scope.clone(),
                rights: grant.rights,
                valid_from: grant.valid_from.unwrap_or(now),
                valid_until: grant.valid_until,
                accepted: false,
                revoked_at: None,
                correspondence: grant.correspondence,
                office_address: grant.office_address.clone(),
            };
            mandates::put(txn, &m)?;
            registry::record_change(
                txn,
                &me,
                &entry(Change::MandateGranted {
                    id: m.id,
                    representative: m.representative.label(),
                }),
            )?;
            CitizenReply::Mandate(m.id)
        }
        CitizenAction::AcceptMandate { id } | CitizenAction::RevokeMandate { id } => {
            let Some(mut m) = mandates::get(txn, id)? else {
                return Ok(Some(refused(ReasonCode::NotForThisNode, "no such mandate")));
            };
            let holder = is_me(&m.holder)?;
            let rep = is_me(&m.representative.person)?;
            if m.revoked_at.is_some() {
                return Ok(Some(refused(
                    ReasonCode::Expired,
                    "this mandate was revoked",
                )));
            }
            let change = match action {
                CitizenAction::AcceptMandate { .. } if rep => {
                    m.accepted = true;
                    Change::MandateAccepted { id: m.id }
                }
                CitizenAction::RevokeMandate { .. } if holder || rep => {
                    m.revoked_at = Some(now);
                    Change::MandateRevoked { id: m.id }
                }
                _ => {
                    return Ok(Some(refused(
                        ReasonCode::WrongRole,
                        "this mandate is not yours to change",
                    )));
                }
            };
            mandates::put(txn, &m)?;
            registry::record_change(txn, &m.holder, &entry(change))?;
            CitizenReply::Mandate(m.id)
        }
        CitizenAction::RegisterLegalRepresentation {
            correspondence,
            office_address,
            ..
        } => {
            let Some(v) = attestation else {
                return Ok(Some(refused(ReasonCode::Malformed, "no attestation")));
            };
            let c = &v.content;
            if !is_me(&c.representative.person)? {
                return Ok(Some(refused(
                    ReasonCode::WrongRole,
                    "the attestation names another representative",
                )));
            }
            let Some((holder, _)) = registry::resolve_person(txn, &c.represented)? else {
                return Ok(Some(refused(
                    ReasonCode::NotRegistered,
                    "the represented person is not in the registry",
                )));
            };
            let existing = mandates::listed(txn, mandates::BY_HOLDER, &holder)?
                .into_iter()
                .find(|m| {
                    matches!(&m.kind, MandateKind::Legal { attestation_digest, .. } if *attestation_digest == v.digest)
                });
            if let Some(m) = existing {
                return Ok(Some(CitizenReply::Mandate(m.id)));
            }
            let m = Mandate {
                id: MandateId::random(&mut OsRng),
                kind: MandateKind::Legal {
                    kind: c.kind,
                    registry: c.registry.clone(),
                    case_reference: c.case_reference.clone(),
                    attestation_digest: v.digest,
                },
                holder: holder.clone(),
                representative: c.representative.clone(),
                scope: c.kind.scope(),
                rights: Rights {
                    read: true,
                    manage: true,
                },
                valid_from: c.valid_from,
                valid_until: c.valid_until,
                accepted: true,
                revoked_at: None,
                correspondence: *correspondence,
                office_address: office_address.clone(),
            };
            mandates::put(txn, &m)?;
            registry::record_change(
                txn,
                &holder,
                &entry(Change::LegalRepresentation {
                    id: m.id,
                    kind: c.kind,
                    representative: m.representative.label(),
                }),
            )?;
            CitizenReply::Mandate(m.id)
        }
        CitizenAction::Mandates => {
            let mut all = mandates::listed(txn, mandates::BY_HOLDER, &me)?;
            all.extend(mandates::listed(
                txn,
                mandates::BY_REPRESENTATIVE,
                &claims.subject,
            )?);
            CitizenReply::Mandates(all)
        }
        CitizenAction::Clients => {
            let mut clients = Vec::new();
            for m in mandates::listed(txn, mandates::BY_REPRESENTATIVE, &claims.subject)? {
                if !m.stands(now) {
                    continue;
                }
                let client = registry::get_person(txn, &m.holder)?;
                clients.push(ClientView {
                    mandate: m.id,
                    client: m.holder.clone(),
                    client_name: client.as_ref().and_then(|c| c.name.clone()),
                    inbox: inbox_at(client.as_ref(), home),
                    legal: m.is_legal(),
                    rights: m.rights,
                });
            }
            CitizenReply::Clients(clients)
        }
        CitizenAction::CheckAccess { mandate, sender } => {
            let need = Rights {
                read: true,
                manage: false,
            };
            match governing_mandate(txn, mandate, &claims.subject, sender, need, now, trust)? {
                Ok((named, g)) => {
                    let client = registry::get_person(txn, &named.holder)?;
                    CitizenReply::Access(AccessDecision {
                        mandate: g.id,
                        representative: g.representative.label(),
                        inbox: inbox_at(client.as_ref(), home),
                    })
                }
                Err(refusal) => refusal,
            }
        }
        CitizenAction::SetClientConsent {
            mandate,
            sender,
            digital,
        } => {
            let need = Rights {
                read: false,
                manage: true,
            };
            let m =
                match governing_mandate(txn, mandate, &claims.subject, sender, need, now, trust)? {
                    Ok((named, _)) => named,
                    Err(refusal) => return Ok(Some(refusal)),
                };
            if trust.agency(sender).is_none() {
                return Ok(Some(refused(
                    ReasonCode::UnknownSigner,
                    format!("there is no agency with OIN {sender} in the federation"),
                )));
            }
            let Some(mut client) = registry::get_person(txn, &m.holder)? else {
                return Ok(Some(refused(
                    ReasonCode::NotRegistered,
                    "the client has no entry",
                )));
            };
            let has = client.digital_senders.contains(sender);
            if *digital && !has {
                client.digital_senders.push(sender.clone());
            } else if !*digital && has {
                client.digital_senders.retain(|s| s != sender);
            }
            if *digital != has {
                registry::put_person(txn, &m.holder, &client)?;
                registry::record_change(
                    txn,
                    &m.holder,
                    &entry(Change::Consent {
                        sender: sender.clone(),
                        digital: *digital,
                    }),
                )?;
            }
            CitizenReply::Mandate(m.id)
        }
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

/// The person's inbox, if it is at `home`.
fn inbox_at(person: Option<&PersonRecord>, home: &NodeId) -> Option<InboxId> {
    person
        .and_then(|p| p.inbox.as_ref())
        .filter(|i| &i.home_node == home)
        .map(|i| i.inbox_id)
}

/// The mandate named `id` and the one that governs `who` acting on letters
/// from `sender` with `need` now; or the refusal to answer.
#[allow(clippy::too_many_arguments)]
fn governing_mandate(
    txn: &redb::WriteTransaction,
    id: &MandateId,
    who: &Recipient,
    sender: &estafette_spec::Oin,
    need: Rights,
    now: Timestamp,
    trust: &TrustList,
) -> Result<Result<(Mandate, Mandate), CitizenReply>, StoreError> {
    let Some(named) = mandates::get(txn, id)? else {
        return Ok(Err(refused(ReasonCode::NotForThisNode, "no such mandate")));
    };
    let holders = mandates::listed(txn, mandates::BY_HOLDER, &named.holder)?;
    match estafette_spec::mandate::governing(&holders, who, sender, need, now, trust) {
        Some(g) => {
            let g = g.clone();
            Ok(Ok((named, g)))
        }
        None => Ok(Err(refused(
            ReasonCode::NoMandate,
            "no mandate of yours covers this sender now",
        ))),
    }
}

fn replayed() -> CitizenReply {
    refused(
        ReasonCode::Replayed,
        "this identity assertion's nonce was already used; log in again",
    )
}

/// Records an assertion's nonce; false if another assertion used it.
fn use_nonce(
    txn: &redb::WriteTransaction,
    claims: &IdentityClaims,
    digest: Digest,
) -> Result<bool, StoreError> {
    let mut nonces = txn.open_table(NONCES).map_err(db_err)?;
    let seen = nonces
        .get(claims.nonce.as_slice())
        .map_err(db_err)?
        .map(|v| v.value().to_vec());
    if let Some(seen) = seen {
        let (first, _): (Digest, Timestamp) = estafette_spec::cbor::from_slice(&seen, 4096)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        return Ok(first == digest);
    }
    nonces
        .insert(
            claims.nonce.as_slice(),
            estafette_spec::cbor::to_vec(&(digest, claims.expires_at)).as_slice(),
        )
        .map_err(db_err)?;
    Ok(true)
}

/// Links the identity of `other` into the person's entry under `key`: the
/// kept entry is the one with an inbox (the session's when both have one);
/// the other becomes a pointer. Consent is the union; a verified channel and
/// a postal address are kept; a second inbox (same home node) is merged.
#[allow(clippy::too_many_arguments)]
fn link(
    txn: &redb::WriteTransaction,
    home: &NodeId,
    key: &Recipient,
    mine: Option<PersonRecord>,
    other: &IdentityClaims,
    matched: estafette_spec::identity::IdentityMatch,
    digest: Digest,
    now: Timestamp,
    inbox_url: Option<String>,
) -> Result<(CitizenReply, Option<VerificationMail>), StoreError> {
    let theirs = registry::resolve_person(txn, &other.subject)?;
    if let Some((their_key, _)) = &theirs
        && their_key == key
    {
        // Already one entry.
        let view = mine
            .map(|p| p.view(key, home))
            .unwrap_or_else(|| PersonRecord::new("nl").view(key, home));
        return Ok((CitizenReply::Person(view), None));
    }
    let (their_key, theirs) = match theirs {
        Some((k, p)) => (k, Some(p)),
        None => (other.subject.clone(), None),
    };
    let has_inbox = |p: &Option<PersonRecord>| p.as_ref().is_some_and(|p| p.inbox.is_some());
    let (keep_key, mut keep, gone_key, gone) = match (has_inbox(&mine), has_inbox(&theirs)) {
        (false, false) => {
            return Ok((
                refused(
                    ReasonCode::NotRegistered,
                    "neither identity has a digital inbox yet; register one first",
                ),
                None,
            ));
        }
        (true, _) => (key.clone(), mine, their_key, theirs),
        (false, true) => (their_key, theirs, key.clone(), mine),
    };
    let Some(kept) = keep.as_mut() else {
        return Ok((refused(ReasonCode::NotRegistered, "no inbox to keep"), None));
    };
    if let Some(gone) = &gone {
        if let (Some(a), Some(b)) = (&kept.inbox, &gone.inbox) {
            if a.home_node != b.home_node {
                return Ok((
                    refused(
                        ReasonCode::NotForThisNode,
                        format!(
                            "the two inboxes are at {} and {}; linking needs them at one home node",
                            a.home_node, b.home_node
                        ),
                    ),
                    None,
                ));
            }
            if &a.home_node != home {
                return Ok((
                    refused(
                        ReasonCode::NotForThisNode,
                        format!("the inboxes are at {}; link there", a.home_node),
                    ),
                    None,
                ));
            }
            kept.merged_inboxes.push(b.inbox_id);
            kept.merged_inboxes
                .extend(gone.merged_inboxes.iter().copied());
        }
        for sender in &gone.digital_senders {
            if !kept.digital_senders.contains(sender) {
                kept.digital_senders.push(sender.clone());
            }
        }
        if !kept.channel_working() && gone.channel_working() {
            kept.contact_channels = gone.contact_channels.clone();
        }
        kept.active |= gone.active;
        if kept.postal_address.is_none() {
            kept.postal_address = gone.postal_address.clone();
        }
        if kept.name.is_none() {
            kept.name = gone.name.clone();
        }
        kept.linked.extend(gone.linked.iter().cloned());
        // Whoever pointed at the gone entry now points at the kept one.
        for earlier in &gone.linked {
            registry::put_person(
                txn,
                earlier,
                &PersonRecord::link_to(&keep_key, &kept.language),
            )?;
        }
    }
    kept.linked.push(gone_key.clone());
    kept.activity.last_session_at = Some(now);
    if inbox_url.is_some() {
        kept.inbox_url = inbox_url;
    }
    let entry = |with: &Recipient| ChangeEntry {
        at: now,
        change: Change::Linked {
            with: with.clone(),
            matched,
        },
        assertion_digest: Some(digest),
    };
    registry::put_person(txn, &keep_key, kept)?;
    registry::put_person(
        txn,
        &gone_key,
        &PersonRecord::link_to(&keep_key, &kept.language),
    )?;
    registry::record_change(txn, &keep_key, &entry(&gone_key))?;
    registry::record_change(txn, &gone_key, &entry(&keep_key))?;
    Ok((CitizenReply::Person(kept.view(&keep_key, home)), None))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn apply_verification(
    txn: &redb::WriteTransaction,
    home: &NodeId,
    digest: [u8; 32],
    now: Timestamp,
) -> Result<CitizenReply, StoreError> {
    let mut tokens = txn.open_table(EMAIL_TOKENS).map_err(db_err)?;
    let found = tokens
        .remove(&digest)
        .map_err(db_err)?
        .map(|v| v.value().to_vec());
    drop(tokens);
    let unknown = || {
        refused(
            ReasonCode::InvalidToken,
            "this link is unknown or was already used; add your e-mail address again",
        )
    };
    let Some(found) = found else {
        return Ok(unknown());
    };
    let (recipient, expires_at): (Recipient, Timestamp) =
        estafette_spec::cbor::from_slice(&found, 4096)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if expires_at <= now {
        return Ok(refused(
            ReasonCode::InvalidToken,
            "this link has expired; add your e-mail address again",
        ));
    }
    let Some(mut person) = registry::get_person(txn, &recipient)? else {
        return Ok(unknown());
    };
    let wanted = Some(Digest(digest));
    let Some(channel) = person
        .contact_channels
        .iter_mut()
        .find(|c| c.token_digest == wanted)
    else {
        return Ok(unknown());
    };
    channel.state = ChannelState::Verified;
    channel.token_digest = None;
    let address = channel.address.clone();
    registry::put_person(txn, &recipient, &person)?;
    registry::record_change(
        txn,
        &recipient,
        &ChangeEntry {
            at: now,
            change: Change::EmailVerified { address },
            assertion_digest: None,
        },
    )?;
    Ok(CitizenReply::Person(person.view(&recipient, home)))
}

/// Applies one assertion-carrying request inside the write transaction.
/// Refusals write nothing; only storage errors are `Err`.
#[allow(clippy::too_many_arguments)]
fn apply(
    txn: &redb::WriteTransaction,
    home: &NodeId,
    claims: &IdentityClaims,
    digest: Digest,
    other: Option<(IdentityClaims, Digest)>,
    action: CitizenAction,
    inbox_url: Option<String>,
    token: [u8; VERIFICATION_TOKEN_BYTES],
    now: Timestamp,
) -> Result<(CitizenReply, Option<VerificationMail>), StoreError> {
    // Nonces are single use: one nonce, one assertion (which may authorise
    // several changes while it is fresh, from the home node it names).
    if !use_nonce(txn, claims, digest)? {
        return Ok((replayed(), None));
    }
    if let (CitizenAction::Link { .. }, Some((other, other_digest))) = (&action, &other)
        && !use_nonce(txn, other, *other_digest)?
    {
        return Ok((replayed(), None));
    }
    // A linked identity acts on the person's one entry.
    let (key, stored) = match registry::resolve_person(txn, &claims.subject)? {
        Some((key, person)) => (key, Some(person)),
        None => (claims.subject.clone(), None),
    };
    let recipient = &key;
    if let (CitizenAction::Link { .. }, Some((other, _))) = (&action, &other) {
        // Checked before the transaction; recorded in the history.
        let matched = estafette_spec::identity::same_person(claims, other).unwrap_or_default();
        return link(
            txn, home, recipient, stored, other, matched, digest, now, inbox_url,
        );
    }
    let entry = |change: Change| ChangeEntry {
        at: now,
        change,
        assertion_digest: Some(digest),
    };
    let not_registered = || {
        (
            refused(
                ReasonCode::NotRegistered,
                "you have no digital inbox yet; register first",
            ),
            None,
        )
    };
    let mut changes: Vec<ChangeEntry> = Vec::new();
    let mut mail = None;
    let mut person = match (&action, stored) {
        (CitizenAction::History, _) => {
            let history = registry::history_in(txn, recipient, MAX_HISTORY_ENTRIES)?;
            return Ok((CitizenReply::History(history), None));
        }
        (CitizenAction::SessionStarted, None) => {
            // Not registered: show an empty record; nothing is stored.
            let empty = PersonRecord::new("nl");
            return Ok((CitizenReply::Person(empty.view(recipient, home)), None));
        }
        (CitizenAction::Register { language, .. }, None) => PersonRecord::new(language),
        (_, None) => return Ok(not_registered()),
        (_, Some(p)) => p,
    };
    match action {
        CitizenAction::SessionStarted
        | CitizenAction::History
        | CitizenAction::VerifyEmail { .. }
        | CitizenAction::Link { .. }
        | CitizenAction::GrantMandate { .. }
        | CitizenAction::AcceptMandate { .. }
        | CitizenAction::RevokeMandate { .. }
        | CitizenAction::RegisterLegalRepresentation { .. }
        | CitizenAction::Mandates
        | CitizenAction::Clients
        | CitizenAction::CheckAccess { .. }
        | CitizenAction::SetClientConsent { .. }
        | CitizenAction::LetterEvidence { .. } => {}
        CitizenAction::Register {
            language,
            postal_address,
        } => match &person.inbox {
            Some(inbox) if &inbox.home_node != home => {
                return Ok((
                    refused(
                        ReasonCode::NotForThisNode,
                        format!(
                            "you already have an inbox at {}; registration is there",
                            inbox.home_node
                        ),
                    ),
                    None,
                ));
            }
            Some(_) => {}
            None => {
                person.inbox = Some(InboxLocation {
                    home_node: home.clone(),
                    inbox_id: InboxId::random(&mut OsRng),
                });
                // An inbox starts inactive: activation is its own act.
                person.active = false;
                person.language = language;
                if postal_address.is_some() {
                    person.postal_address = postal_address;
                }
                person.name = Some(format!("{} {}", claims.given_names, claims.family_name));
                changes.push(entry(Change::Registered {
                    home_node: home.clone(),
                }));
            }
        },
        CitizenAction::AddEmail { address } => {
            let mut tokens = txn.open_table(EMAIL_TOKENS).map_err(db_err)?;
            // The address replaces any earlier one; an older link stops working.
            for old in person
                .contact_channels
                .iter()
                .filter_map(|c| c.token_digest)
            {
                tokens.remove(&old.0).map_err(db_err)?;
            }
            person
                .contact_channels
                .retain(|c| c.kind != ChannelKind::Email);
            let digest = token_digest(&token);
            tokens
                .insert(
                    &digest,
                    estafette_spec::cbor::to_vec(&(
                        recipient.clone(),
                        now.plus_s(EMAIL_TOKEN_LIFETIME_S),
                    ))
                    .as_slice(),
                )
                .map_err(db_err)?;
            person.contact_channels.push(ContactChannel {
                kind: ChannelKind::Email,
                address: address.clone(),
                state: ChannelState::Pending,
                token_digest: Some(Digest(digest)),
            });
            mail = Some(VerificationMail {
                address: address.clone(),
                token,
                language: person.language.clone(),
                inbox_url: inbox_url
                    .clone()
                    .or_else(|| person.inbox_url.clone())
                    .unwrap_or_else(|| DEFAULT_INBOX_URL.into()),
            });
            changes.push(entry(Change::EmailAdded { address }));
        }
        CitizenAction::Activate => {
            if !person.channel_working() {
                return Ok((
                    refused(
                        ReasonCode::NoNotificationChannel,
                        "verify an e-mail address first: it is how you hear of new letters",
                    ),
                    None,
                ));
            }
            if !person.active {
                person.active = true;
                changes.push(entry(Change::Activated));
            }
        }
        CitizenAction::SetConsent { sender, digital } => {
            let has = person.digital_senders.contains(&sender);
            if digital && !has {
                if person.digital_senders.len() >= MAX_CONSENTS {
                    return Ok((
                        refused(
                            ReasonCode::TooLarge,
                            format!(
                                "at most {MAX_CONSENTS} senders can be chosen for digital mail"
                            ),
                        ),
                        None,
                    ));
                }
                person.digital_senders.push(sender.clone());
            } else if !digital && has {
                person.digital_senders.retain(|s| s != &sender);
            }
            if digital != has {
                changes.push(entry(Change::Consent { sender, digital }));
            }
        }
        CitizenAction::AllPaper => {
            if !person.digital_senders.is_empty() {
                person.digital_senders.clear();
                changes.push(entry(Change::AllPaper));
            }
        }
    }
    // Every request is a session: the monitor's dormancy rule counts them.
    person.activity.last_session_at = Some(now);
    if inbox_url.is_some() {
        person.inbox_url = inbox_url;
    }
    registry::put_person(txn, recipient, &person)?;
    for change in &changes {
        registry::record_change(txn, recipient, change)?;
    }
    Ok((CitizenReply::Person(person.view(recipient, home)), mail))
}
