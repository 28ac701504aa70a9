//! Revocation without a restart, at submission: see also the process test
//! in `tests/tests/revocation.rs` (TLS, open connections).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// A letter sealed with a seal key that the trust list on disk now
/// revokes is refused from the moment the gateway has re-read it, without
/// a restart (the audit found one accepted 13 s after the revocation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_sealed_with_a_revoked_key_is_refused_once_the_trust_list_is_reread() {
    use estafette_pki::RevokeTarget;
    let other: estafette_spec::Oin = "00000003273318220000".parse().unwrap();
    let mut world = common::World::start_with(|fed| {
        fed.issue_agency(
            &"00000003273318220000".parse().unwrap(),
            "Gemeente Voorbeeld",
            vec![],
        )
        .unwrap();
    })
    .await;
    let version = world.gateway.gateway.node.trust().content().version;
    let letter = |world: &common::World| {
        let letter = estafette_spec::Letter {
            message_id: estafette_spec::MessageId::random(&mut rand_core::OsRng),
            sender: other.clone(),
            recipient: common::RESIDENT.parse().unwrap(),
            created_at: estafette_pki::now(),
            subject: "Aanslag".into(),
            body: "Tekst".into(),
            attachments: vec![],
            nature: estafette_spec::Nature::Decision,
            legal_effect: true,
            expected_action: "Betalen".into(),
            response_deadline: None,
            language: "nl".into(),
            sender_reference: "R".into(),
        };
        let key = estafette_pki::keys::read_ed25519(
            &world.fed.fed.agency_dir(&other).join("seal.key.pem"),
        )
        .unwrap();
        estafette_spec::SignedMessage::sign(&letter, &key).unwrap()
    };
    world
        .gateway
        .gateway
        .submit(&other, &letter(&world))
        .await
        .unwrap();
    world
        .fed
        .fed
        .revoke(&RevokeTarget::Member(other.to_string()), "key compromise")
        .unwrap();
    let started = std::time::Instant::now();
    estafette_relay::testkit::wait_until(
        "the gateway to re-read the trust list",
        estafette_relay::trust_state::FEDERATION_RELOAD_INTERVAL
            + std::time::Duration::from_secs(3),
        || world.gateway.gateway.node.trust().content().version > version,
    )
    .await;
    println!(
        "trust list re-read {} ms after the revocation",
        started.elapsed().as_millis()
    );
    let refused = world.gateway.gateway.submit(&other, &letter(&world)).await;
    assert!(
        matches!(
            refused,
            Err(estafette_gateway::gateway::SubmitError::UntrustedSigner(_))
        ),
        "{refused:?}"
    );
    world.stop().await;
}
