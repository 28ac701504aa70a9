"""An independent check of Estafette's COSE Receipts and proof bundles
(SPEC.md §15, §16).

Follows the verification procedures of SPEC.md §15 and §16 with a general
COSE library (pycose), cbor2, SHA-256 (hashlib) and Ed25519 (cryptography),
without any of Estafette's code, over the test vectors in spec/vectors/:

    python verify.py spec/vectors

Prints one line per vector and exits non-zero if any outcome differs from
the one vectors.json lists. Or over one proof bundle, with the federation's
root public key (hex):

    python verify.py --bundle letter.proof --root 3b6a27bc...

Prints the letter's events, one per line, and exits non-zero unless the
bundle verifies.
"""

import base64
import hashlib
import json
import sys
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pycose import headers
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

VDS, VDP, TREE_SIZE, COSIGNATURES, CWT_CLAIMS = 395, 396, -65537, -65538, 15
CHECKPOINT_CONTENT_TYPE = "application/vnd.estafette.checkpoint.v1"


class Refused(Exception):
    """A vector did not verify; the argument is the code of SPEC.md §15."""


def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index, size, leaf, path):
    """RFC 9162 §2.1.3.2, without the final comparison."""
    if index >= size:
        raise Refused("bad_proof")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Refused("bad_proof")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Refused("bad_proof")
    return r


def verify_consistency(old_size, new_size, old_root, new_root, proof):
    """RFC 9162 §2.1.4.2 for 0 < old_size < new_size."""
    path = ([old_root] if old_size & (old_size - 1) == 0 else []) + proof
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class Keys:
    """The keys that may sign checkpoints and cosign them: the nodes and the
    gateway of a trust list (checked with the federation's root key), by
    key id: the first 16 bytes of SHA-256 of the key."""

    def __init__(self, data, root):
        msg = Sign1Message.decode(data)
        msg.key = OKPKey(crv=Ed25519, x=root)
        if not msg.verify_signature():
            raise Refused("trust_list")
        trust = cbor2.loads(msg.payload)
        nodes = [trust["gateway"], *trust["nodes"]]
        self.by_kid = {
            hashlib.sha256(n["signing_key"]).digest()[:16]: (n["id"], n["signing_key"])
            for n in nodes
        }
        self.witnesses = {n["id"]: set(n.get("witnesses", [])) for n in nodes}

    def public_key(self, kid):
        if kid not in self.by_kid:
            raise Refused("unknown_signer")
        return self.by_kid[kid]


def checkpoint_fields(msg):
    """Step 2: the protected header names the checkpoint."""
    phdr = msg.phdr
    if phdr[headers.Algorithm].identifier not in (-8, -19):
        raise Refused("malformed")
    if phdr[headers.ContentType] != CHECKPOINT_CONTENT_TYPE or phdr[VDS] != 1:
        raise Refused("malformed")
    claims = phdr[CWT_CLAIMS]
    return claims[1], phdr[TREE_SIZE], claims[6]


def verify_log_signature(msg, keys, origin, root):
    """Steps 4-5: the signer is the log's node, and the signature verifies
    over the Sig_structure whose payload is the root."""
    label, public_key = keys.public_key(msg.phdr[headers.KID])
    if origin.split("/")[0] != label:
        raise Refused("wrong_role")
    msg.key = OKPKey(crv=Ed25519, x=public_key)
    detached = None if msg.payload == root else root
    if not msg.verify_signature(detached_payload=detached):
        raise Refused("bad_signature")


def note_body(origin, size, root):
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def verify_cosignatures(uhdr, keys, origin, size, root):
    """Step 6: each cosignature is Ed25519 over the C2SP message."""
    witnesses = set()
    for kid, time, signature in uhdr.get(COSIGNATURES, []):
        if bytes(kid) not in keys.by_kid:
            raise Refused("unlisted_witness")
        label, public_key = keys.public_key(bytes(kid))
        if label not in keys.witnesses[origin.split("/")[0]]:
            raise Refused("unlisted_witness")
        message = f"cosignature/v1\ntime {time}\n{note_body(origin, size, root)}"
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message.encode())
        except InvalidSignature:
            raise Refused("bad_cosignature")
        witnesses.add(label)
    return witnesses


def verify_receipt(receipt, entry, keys, min_cosignatures):
    """SPEC.md §15, 'Verifying a receipt'. Returns (origin, size, root)."""
    raw = cbor2.loads(receipt)
    uhdr = (raw.value if isinstance(raw, cbor2.CBORTag) else raw)[1]
    msg = Sign1Message.decode(receipt)
    if msg.payload is not None:
        raise Refused("malformed")
    origin, size, _ = checkpoint_fields(msg)
    # Step 3: the inclusion proof gives the root.
    (proof,) = uhdr[VDP][-1]
    proof_size, index, path = cbor2.loads(proof)
    if proof_size != size:
        raise Refused("wrong_tree_size")
    root = root_from_inclusion(index, size, leaf_hash(entry), path)
    verify_log_signature(msg, keys, origin, root)
    if len(verify_cosignatures(uhdr, keys, origin, size, root)) < min_cosignatures:
        raise Refused("too_few_cosignatures")
    return origin, size, root


def verify_checkpoint(data, keys):
    """A checkpoint: the root is the payload. Returns (origin, size, root)."""
    raw = cbor2.loads(data)
    uhdr = (raw.value if isinstance(raw, cbor2.CBORTag) else raw)[1]
    msg = Sign1Message.decode(data)
    origin, size, _ = checkpoint_fields(msg)
    root = msg.payload
    verify_log_signature(msg, keys, origin, root)
    verify_cosignatures(uhdr, keys, origin, size, root)
    return origin, size, root


MAX_EVIDENCE_BYTES = 12288


def verify_evidence(data, keys):
    """An evidence object [record, receipt]: the receipt proves the record
    is in its issuer's log. Returns the record (a dict)."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise Refused("too_large")
    record_bytes, receipt = cbor2.loads(data)
    record = cbor2.loads(record_bytes)
    origin, _, _ = verify_receipt(receipt, record_bytes, keys, 0)
    if origin.split("/")[0] != record["issuer"]:
        raise Refused("wrong_role")
    return record


BUNDLE_FORMAT = "estafette-proof-bundle/v1"


def verify_bundle(data, root):
    """SPEC.md §16: [format, message id, trust list, [evidence...]]. The
    trust list verifies with the root key; every evidence object verifies
    against it, is of the bundle's message, and links to a record before
    it (the first to none). Returns the records."""
    fmt, message_id, trust_list, evidence = cbor2.loads(data)
    if fmt != BUNDLE_FORMAT or not evidence:
        raise Refused("malformed")
    keys = Keys(trust_list, root)
    records, digests = [], []
    for obj in evidence:
        try:
            record = verify_evidence(obj, keys)
        except Refused:
            raise Refused("evidence")
        if record["message_id"] != message_id:
            raise Refused("other_message")
        previous = record["previous"]
        if (previous is None) != (not digests) or (previous is not None and previous not in digests):
            raise Refused("evidence")
        digests.append(hashlib.sha256(cbor2.loads(obj)[0]).digest())
        records.append(record)
    return records


def outcome(check):
    try:
        check()
        return "valid"
    except Refused as refused:
        return refused.args[0]


def main(vectors):
    vectors = Path(vectors)
    manifest = json.loads((vectors / "vectors.json").read_text())
    root = bytes.fromhex(manifest["root_public_key"])
    keys = Keys((vectors / manifest["trust_list"]).read_bytes(), root)
    entry = (vectors / manifest["receipt_entry"]).read_bytes()
    k = manifest["receipt_min_cosignatures"]
    failures = 0

    def report(file, got, expected):
        nonlocal failures
        ok = got == expected
        failures += not ok
        print(f"{'ok' if ok else 'FAILED'}  {file}: {got} (expected {expected})")

    for v in manifest["receipts"]:
        receipt = (vectors / v["file"]).read_bytes()
        report(v["file"], outcome(lambda: verify_receipt(receipt, entry, keys, k)), v["expected"])

    for v in manifest["evidence"]:
        data = (vectors / v["file"]).read_bytes()
        report(v["file"], outcome(lambda: verify_evidence(data, keys)), v["expected"])

    # The chain: each record names the SHA-256 of the record before it.
    chain = [
        cbor2.loads((vectors / f"evidence-{name}.cbor").read_bytes())[0]
        for name in ("1-submission-acceptance", "2-relay-acceptance", "3-content-consignment")
    ]
    linked = all(
        cbor2.loads(later)["previous"] == hashlib.sha256(earlier).digest()
        for earlier, later in zip(chain, chain[1:])
    ) and cbor2.loads(chain[0])["previous"] is None
    report("evidence chain 1 -> 2 -> 3", "valid" if linked else "broken", "valid")

    # Checkpoints: one root per (origin, size), or the log forked.
    seen = {}

    def check_checkpoint(data):
        origin, size, root = verify_checkpoint(data, keys)
        if seen.setdefault((origin, size), root) != root:
            raise Refused("split_view")
        return origin, size, root

    heads = {}
    for v in manifest["checkpoints"]:
        data = (vectors / v["file"]).read_bytes()
        got = outcome(lambda: heads.__setitem__(v["file"], check_checkpoint(data)))
        report(v["file"], got, v["expected"])

    # The log at 3 records is the start of the log at 5.
    _, old_size, old_root = heads["checkpoint-3.cose"]
    _, new_size, new_root = heads["checkpoint.cose"]
    proof = [bytes.fromhex(h) for h in manifest["consistency_3_to_5"]]
    consistent = verify_consistency(old_size, new_size, old_root, new_root, proof)
    report("consistency 3 -> 5", "valid" if consistent else "inconsistent", "valid")

    # The receipt proves against checkpoint.cose: the same root.
    receipt = (vectors / "receipt.cose").read_bytes()
    same = verify_receipt(receipt, entry, keys, k)[2] == new_root
    report("receipt.cose against checkpoint.cose", "valid" if same else "other root", "valid")

    for v in manifest["bundles"]:
        data = (vectors / v["file"]).read_bytes()
        report(v["file"], outcome(lambda: verify_bundle(data, root)), v["expected"])
    return 1 if failures else 0


def check_bundle(path, root_hex):
    """One bundle: its events, or why it does not verify."""
    try:
        records = verify_bundle(Path(path).read_bytes(), bytes.fromhex(root_hex))
    except Refused as refused:
        print(f"NOT VALID: {refused.args[0]}")
        return 1
    for record in records:
        print(f"{record['event']} by {record['issuer']} at {record['issued_at']}")
    print(f"VALID: {len(records)} records")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--bundle"] and len(args) == 4 and args[2] == "--root":
        sys.exit(check_bundle(args[1], args[3]))
    sys.exit(main(args[0] if args else "spec/vectors"))
