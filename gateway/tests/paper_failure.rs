//! A paper letter with nowhere to go never passes silently: a letter to a
//! person the gateway knows no postal address for is answered with the
//! failure at submission and gets PaperFailure evidence the agency sees;
//! a digital letter that escalates to paper for a person without an
//! address gets PaperFailure when the monitor would print it. Both show
//! in the operator report and in `/metrics`; no PDF is made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use estafette_relay::testkit::AGENCY;
use estafette_spec::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_without_a_postal_address_fails_visibly() {
    let w = World::start().await;

    // Not in the registry at all: paper (no inbox), and nowhere to print it.
    let (m0, summary) = w.send_summary(RESIDENT).await;
    assert_eq!(summary.channel, "paper");
    assert_eq!(summary.reason.as_deref(), Some("no_inbox"));
    assert_eq!(summary.failure.as_deref(), Some("no_postal_address"));
    let trust = w.gateway.gateway.node.trust();
    let chain: Vec<Vec<u8>> = Evidence::order_chain(
        w.gateway
            .gateway
            .records()
            .read()
            .unwrap()
            .evidence_for(&m0)
            .unwrap(),
        &trust,
    );
    let events: Vec<_> = chain
        .iter()
        .map(|b| {
            let r = Evidence::verify(b, &trust).unwrap().record;
            (r.event, r.reason)
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (EvidenceEvent::SubmissionAcceptance, None),
            (EvidenceEvent::PaperFallback, Some(ReasonCode::NoInbox)),
            (
                EvidenceEvent::PaperFailure,
                Some(ReasonCode::NoPostalAddress)
            ),
        ],
        "in chain order"
    );
    Evidence::verify_chain(&chain, &trust).unwrap();
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    assert_eq!(report.spooled, 0, "no PDF for a letter with nowhere to go");

    // A digital reader without a postal address whose letter stays unread:
    // the paper copy cannot be printed either.
    let mut c = w.citizen();
    c.login(&w.login_assertion(RESIDENT)).await.unwrap();
    w.go_digital(&c, "nl", None, EMAIL, &[AGENCY]).await;
    let (m1, channel) = w.send(RESIDENT, None).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m1, EvidenceEvent::ConsignmentNotification)
        .await;
    w.clock.advance_s(7 * DAY);
    w.gateway.gateway.monitor_cycle().await.unwrap();
    w.clock.advance_s(8 * DAY);
    w.gateway.gateway.monitor_cycle().await.unwrap();
    w.gateway.gateway.monitor_cycle().await.unwrap();
    let events = w.events(&m1);
    assert!(
        events.contains(&(
            EvidenceEvent::PaperFallback,
            Some(ReasonCode::UnreadTooLong)
        )),
        "{events:?}"
    );
    assert!(
        events.contains(&(
            EvidenceEvent::PaperFailure,
            Some(ReasonCode::NoPostalAddress)
        )),
        "{events:?}"
    );
    let chain: Vec<Vec<u8>> = Evidence::order_chain(
        w.gateway
            .gateway
            .records()
            .read()
            .unwrap()
            .evidence_for(&m1)
            .unwrap(),
        &w.gateway.gateway.node.trust(),
    );
    Evidence::verify_chain(&chain, &w.gateway.gateway.node.trust()).unwrap();
    assert!(
        estafette_gateway::paper::Spool::new(&w.spool)
            .manifest()
            .unwrap()
            .is_empty(),
        "nothing in the print spool"
    );

    // The operator sees both, in the report and in /metrics.
    let report = w.gateway.gateway.operator_report(12).unwrap();
    assert_eq!(
        report.paper_failed.get("no_postal_address"),
        Some(&2),
        "{report:?}"
    );
    assert_eq!(report.paper_not_spooled, 0, "{report:?}");
    assert!(
        report
            .metrics()
            .contains("estafette_gateway_paper_failed{reason=\"no_postal_address\"} 2"),
        "{}",
        report.metrics()
    );
    assert!(
        report.text().contains("cannot be printed"),
        "{}",
        report.text()
    );
    w.stop().await;
}
