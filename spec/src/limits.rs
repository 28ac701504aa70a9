//! Every limit of the wire formats, named. Decoders enforce them before they
//! allocate: an input over its size limit is refused by its length alone, and
//! the CBOR pre-scan ([`crate::cbor`]) refuses a nesting, a count or a length
//! over these limits before any value is built.

/// Largest `SignedMessage` (COSE bytes), attachments included: 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Envelope overhead on top of the message: routing header, HPKE
/// encapsulated key and tag, the gateway's signature.
pub const MAX_ENVELOPE_OVERHEAD_BYTES: usize = 16 * 1024;
/// Largest `Envelope` (COSE bytes).
pub const MAX_ENVELOPE_BYTES: usize = MAX_MESSAGE_BYTES + MAX_ENVELOPE_OVERHEAD_BYTES;
/// Largest evidence object (`[record, receipt]`): a record with the longest
/// texts and the largest receipt.
pub const MAX_EVIDENCE_BYTES: usize = 12 * 1024;
/// Largest `IdentityAssertion` (COSE bytes).
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// Largest `TrustList` (COSE bytes).
pub const MAX_TRUST_LIST_BYTES: usize = 4 * 1024 * 1024;

/// Deepest CBOR nesting accepted anywhere (arrays, maps and tags count).
/// Our deepest structure (a trust list entry's route list inside the
/// COSE payload) nests 4 levels; 16 leaves room without risking the stack.
pub const MAX_CBOR_DEPTH: usize = 16;
/// Most items in one CBOR array or map.
pub const MAX_CBOR_CONTAINER_ITEMS: u64 = 100_000;

/// Most attachments on one letter.
pub const MAX_ATTACHMENTS: usize = 32;
/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Longest body text, in bytes (UTF-8).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest short text field (names, references, expected action, media
/// types, reasons), in characters.
pub const MAX_SHORT_TEXT_CHARS: usize = 500;
/// Longest attachment file name, in characters.
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 255;
/// Longest language tag (BCP 47 subset: `ll` or `ll-RR`), in characters.
pub const MAX_LANGUAGE_TAG_CHARS: usize = 8;

/// Longest node id (a DNS name).
pub const MAX_NODE_ID_CHARS: usize = 253;
/// Longest opaque identifier part of an eIDAS person id.
pub const MAX_EIDAS_IDENTIFIER_CHARS: usize = 256;

/// Most relay hops an envelope may take.
pub const MAX_HOP_LIMIT: u8 = 16;
/// Longest time an envelope may live, from created to expires: 30 days.
pub const MAX_ENVELOPE_LIFETIME_S: u64 = 30 * 24 * 3600;

/// Longest validity of an identity assertion: 5 minutes.
pub const MAX_ASSERTION_LIFETIME_S: u64 = 5 * 60;
/// Clock skew tolerated between nodes when checking "not yet valid".
pub const MAX_CLOCK_SKEW_S: u64 = 60;
/// Shortest and longest assertion nonce, in bytes.
pub const MIN_NONCE_BYTES: usize = 16;
pub const MAX_NONCE_BYTES: usize = 64;

/// Most entries of each kind in a trust list.
pub const MAX_TRUST_LIST_ENTRIES: usize = 10_000;
/// Most routes on one node entry.
pub const MAX_ROUTES_PER_NODE: usize = 1_000;
/// Most addresses of one node (its `address` and `other_addresses`): the
/// gateway's instances.
pub const MAX_NODE_ADDRESSES: usize = 8;
/// Most witnesses named for one node's log (the most cosignatures a
/// receipt carries, [`MAX_COSIGNATURES`](crate::receipt::MAX_COSIGNATURES)).
pub const MAX_WITNESSES: usize = 16;
/// Longest node address (`host:port`), in characters.
pub const MAX_ADDRESS_CHARS: usize = 255;
/// Longest line of a postal address.
pub const MAX_POSTAL_LINE_CHARS: usize = 100;

/// Largest OpenID Connect ID token accepted, in bytes (compact JWS).
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// Longest validity of an ID token (`exp - iat`). Changes still need a
/// login (`auth_time`) of at most [`MAX_ASSERTION_LIFETIME_S`] ago.
pub const MAX_ID_TOKEN_LIFETIME_S: u64 = 60 * 60;
/// Most audiences an ID token may name.
pub const MAX_ID_TOKEN_AUDIENCES: usize = 16;
/// Most signing keys of one OpenID provider in the trust list.
pub const MAX_OIDC_KEYS: usize = 16;
/// Most `acr` values mapped for one OpenID provider.
pub const MAX_OIDC_ACR_VALUES: usize = 32;
/// Longest issuer URL or `acr` value, in characters.
pub const MAX_OIDC_URL_CHARS: usize = 255;
/// Longest claim name, client id or key id, in characters.
pub const MAX_OIDC_NAME_CHARS: usize = 255;
/// RSA signing keys: ring's range.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;
pub const MAX_RSA_MODULUS_BITS: usize = 8192;
/// Largest JWKS document read into the trust list, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Largest SD-JWT presentation (a PID with its disclosures), in bytes.
pub const MAX_SD_JWT_BYTES: usize = 64 * 1024;
/// Most disclosures in one SD-JWT presentation.
pub const MAX_SD_JWT_DISCLOSURES: usize = 64;
/// Largest Token Status List token (a JWT) carried with a PID presentation.
pub const MAX_STATUS_LIST_TOKEN_BYTES: usize = 256 * 1024;
/// Largest status list once decompressed: 8 million one-bit entries.
pub const MAX_STATUS_LIST_BYTES: usize = 1024 * 1024;
/// Oldest status list accepted (its `iat`): a revocation counts within a day.
pub const MAX_STATUS_LIST_AGE_S: u64 = 24 * 60 * 60;
/// Longest personal administrative number of a PID.
pub const MAX_PID_ADMINISTRATIVE_NUMBER_CHARS: usize = 255;
