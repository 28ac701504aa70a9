//! Fixed-size byte values (keys, digests) with serde: a CBOR byte string on
//! the wire, lower-case hex in human-readable formats (JSON).

use ed25519_dalek::VerifyingKey;

/// Implements serde for a newtype over `[u8; N]`.
#[macro_export]
#[doc(hidden)]
macro_rules! fixed_bytes_serde {
    ($ty:ident, $n:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(&$crate::bytes::Hex(&self.0))
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let bytes: Vec<u8> = if deserializer.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    $crate::bytes::from_hex(&text).ok_or_else(|| {
                        D::Error::custom(concat!(stringify!($ty), ": not hexadecimal"))
                    })?
                } else {
                    serde_bytes::ByteBuf::deserialize(deserializer)?.into_vec()
                };
                let array: [u8; $n] = bytes.as_slice().try_into().map_err(|_| {
                    D::Error::custom(format_args!(
                        "{}: expected {} bytes, found {}",
                        stringify!($ty),
                        $n,
                        bytes.len()
                    ))
                })?;
                Self::try_from_array(array).map_err(D::Error::custom)
            }
        }
    };
}

/// Displays bytes as lower-case hex.
pub struct Hex<'a>(pub &'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ids::to_hex(self.0))
    }
}

/// Parses hex (either case); `None` if not hex or of odd length.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

macro_rules! infallible_from_array {
    ($ty:ident, $n:literal) => {
        impl $ty {
            #[doc(hidden)]
            pub fn try_from_array(bytes: [u8; $n]) -> Result<Self, &'static str> {
                Ok($ty(bytes))
            }
        }
    };
}

infallible_from_array!(Digest, 32);
infallible_from_array!(KeyId, 16);
infallible_from_array!(X25519PublicKey, 32);
use crate::cose::{Digest, KeyId};

/// An Ed25519 public key, checked to be a valid curve point on decode.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519PublicKey(pub [u8; 32]);

impl Ed25519PublicKey {
    #[doc(hidden)]
    pub fn try_from_array(bytes: [u8; 32]) -> Result<Self, &'static str> {
        VerifyingKey::from_bytes(&bytes)
            .map(|_| Ed25519PublicKey(bytes))
            .map_err(|_| "Ed25519 public key is not a valid curve point")
    }

    pub fn from_key(key: &VerifyingKey) -> Self {
        Ed25519PublicKey(key.to_bytes())
    }

    /// The verifying key; valid by construction.
    pub fn key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }

    pub fn key_id(&self) -> Option<KeyId> {
        self.key().map(|k| KeyId::of(&k))
    }
}

impl std::fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519PublicKey({})", Hex(&self.0))
    }
}

fixed_bytes_serde!(Ed25519PublicKey, 32);

/// An X25519 public key (HPKE recipient key of a home node).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519PublicKey(pub [u8; 32]);

impl std::fmt::Debug for X25519PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519PublicKey({})", Hex(&self.0))
    }
}

fixed_bytes_serde!(X25519PublicKey, 32);

/// serde for `Vec<u8>`: a CBOR byte string on the wire, hex in JSON.
pub mod vec_hex {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&super::Hex(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            super::from_hex(&text).ok_or_else(|| D::Error::custom("expected hexadecimal bytes"))
        } else {
            Ok(serde_bytes::ByteBuf::deserialize(deserializer)?.into_vec())
        }
    }
}
