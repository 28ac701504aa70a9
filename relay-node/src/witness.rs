//! Witnessing (SPEC.md §15): this node cosigns other nodes' checkpoints
//! when they extend what it cosigned before ([`add_checkpoint`]), and has
//! its own checkpoints cosigned by the witnesses the trust list names for
//! it ([`seek_cosignatures`]). A node that forks or rewrites its log gets
//! no more cosignatures from any witness that saw the old history, and its
//! own metrics and log say so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use estafette_spec::merkle::MAX_PROOF_HASHES;
use estafette_spec::receipt::{Cosignature, SignedCheckpoint, check_origin};
use estafette_spec::relay::{AddCheckpoint, Request, Response};
use estafette_spec::witness::CheckpointOffer;
use estafette_spec::{Digest, NodeId};

use crate::core::NodeCore;
use crate::evidence_log::Witnessing;

/// How often a node offers its newest checkpoint to its witnesses (when
/// its log grew since they last cosigned).
pub const WITNESS_INTERVAL: Duration = Duration::from_secs(1);

fn checkpoint_refused(status: u16, known_size: u64, detail: impl Into<String>) -> Response {
    Response::CheckpointRefused {
        status,
        known_size,
        detail: detail.into(),
    }
}

/// Answers a peer's [`AddCheckpoint`]: a cosignature, or why not.
pub async fn add_checkpoint(core: &Arc<NodeCore>, peer: &NodeId, offer: AddCheckpoint) -> Response {
    let checkpoint = match SignedCheckpoint::parse(&offer.checkpoint) {
        Ok((checkpoint, _)) => checkpoint,
        Err(e) => return checkpoint_refused(400, 0, format!("not a checkpoint: {e}")),
    };
    if offer.consistency.len() > MAX_PROOF_HASHES {
        return checkpoint_refused(400, 0, "consistency proof too long");
    }
    // A node offers checkpoints of its own log only.
    match check_origin(&checkpoint.checkpoint.origin) {
        Ok(owner) if &owner == peer => {}
        _ => return checkpoint_refused(403, 0, "a node offers checkpoints of its own log only"),
    }
    let core2 = core.clone();
    let time = core.clock.now().0;
    let outcome = tokio::task::spawn_blocking(move || {
        let proof: Vec<_> = offer.consistency.iter().map(|d| d.0).collect();
        let offer = CheckpointOffer {
            old_size: offer.old_size,
            consistency: &proof,
            checkpoint: &checkpoint,
        };
        core2.log.witness(&core2.id, &offer, &core2.trust(), time)
    })
    .await;
    match outcome {
        Ok(Ok(cosignature)) => {
            core.metrics.witness_cosigned.inc();
            Response::Cosigned(serde_bytes::ByteBuf::from(cosignature.to_bytes()))
        }
        Ok(Err(Witnessing::Refused {
            refusal,
            known_size,
        })) => {
            core.metrics.witness_refused.inc();
            let status = refusal.http_status();
            if status != 409
                || matches!(
                    refusal,
                    estafette_spec::witness::WitnessRefusal::Fork { .. }
                )
            {
                tracing::warn!(peer = %peer, status, known_size, "refused to cosign a checkpoint: {refusal}");
            }
            checkpoint_refused(status, known_size, refusal.to_string())
        }
        Ok(Err(Witnessing::Failed(e))) => {
            tracing::error!(error = %e, "witnessing failed");
            checkpoint_refused(503, 0, "this witness cannot write now; try again")
        }
        Err(e) => checkpoint_refused(503, 0, format!("witnessing stopped: {e}")),
    }
}

/// Offers this node's newest checkpoint to each of its witnesses that has
/// not cosigned it yet, and keeps it with the cosignatures they give. Ends
/// when the node stops.
pub async fn seek_cosignatures(core: Arc<NodeCore>) {
    // The size each witness is believed to know; a 409 corrects it.
    let mut known: HashMap<NodeId, u64> = HashMap::new();
    // The newest checkpoint's size and the cosignatures it has so far.
    let mut kept: Option<(u64, Vec<Cosignature>)> = None;
    // Registered once, so that a stop while a round is under way is not
    // missed (the loop holds the node, and with it the log's database).
    let stopped = core.stopped.clone();
    let stop = stopped.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WITNESS_INTERVAL) => {}
            _ = &mut stop => return,
        }
        let Some(checkpoint) = core.log.checkpoint() else {
            continue;
        };
        let size = checkpoint.checkpoint.tree_size;
        let pending: Vec<NodeId> = core
            .trust()
            .node(&core.id)
            .map(|me| me.witnesses.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|w| known.get(w) != Some(&size))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let new = gather(&core, &checkpoint, &pending, &mut known).await;
        if new.is_empty() {
            continue;
        }
        let mut all = match kept.take() {
            Some((kept_size, cosignatures)) if kept_size == size => cosignatures,
            _ => Vec::new(),
        };
        all.extend(new);
        match core.log.keep_cosigned(&checkpoint, &all) {
            Ok(()) => {
                core.metrics
                    .log_cosigned_size
                    .set(size.min(i64::MAX as u64) as i64);
                kept = Some((size, all));
            }
            Err(e) => tracing::error!(error = %e, "keeping a cosigned checkpoint failed"),
        }
    }
}

/// One round: the checkpoint to each of `witnesses`; the cosignatures that
/// verify.
async fn gather(
    core: &Arc<NodeCore>,
    checkpoint: &SignedCheckpoint,
    witnesses: &[NodeId],
    known: &mut HashMap<NodeId, u64>,
) -> Vec<Cosignature> {
    let trust = core.trust();
    let size = checkpoint.checkpoint.tree_size;
    let encoded = checkpoint.to_cose(&[]);
    let mut cosignatures = Vec::new();
    for witness in witnesses {
        let Some(entry) = trust.node(witness) else {
            continue;
        };
        // Two tries: the second from the size a 409 names.
        for _ in 0..2 {
            let old_size = known.get(witness).copied().unwrap_or(0).min(size);
            let consistency = match old_size {
                0 => Vec::new(),
                old => match core.log.consistency_proof(old, size) {
                    Ok(Some(proof)) => proof.into_iter().map(Digest).collect(),
                    _ => Vec::new(),
                },
            };
            let request = Request::AddCheckpoint(AddCheckpoint {
                old_size,
                consistency,
                checkpoint: encoded.clone(),
            });
            match core.peers.request_node(entry, &request).await {
                Ok(Response::Cosigned(bytes)) => {
                    let key = entry.signing_key.key();
                    match Cosignature::from_bytes(&bytes) {
                        Ok(c) if key.is_some_and(|k| c.verify(&checkpoint.checkpoint, &k)) => {
                            known.insert(witness.clone(), size);
                            cosignatures.push(c);
                        }
                        _ => {
                            tracing::warn!(witness = %witness, "a witness answered with a cosignature that does not verify")
                        }
                    }
                    break;
                }
                Ok(Response::CheckpointRefused {
                    status: 409,
                    known_size,
                    ..
                }) if known_size != old_size && known_size <= size => {
                    known.insert(witness.clone(), known_size);
                }
                Ok(Response::CheckpointRefused {
                    status,
                    known_size,
                    detail,
                }) => {
                    if status != 503 {
                        core.metrics.log_witness_refusals.inc();
                    }
                    if let Some(held_back) = core.log_throttle.allow("witness refusal") {
                        tracing::error!(
                            witness = %witness,
                            status,
                            known_size,
                            size,
                            refusals_since_last_line = held_back,
                            "a witness refused this node's log checkpoint: {detail}"
                        );
                    }
                    break;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(witness = %witness, error = %e, "witness not reached; tried again later");
                    break;
                }
            }
        }
    }
    cosignatures
}
