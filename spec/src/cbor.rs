//! CBOR with limits. Every decode first runs [`prescan`], an iterative walk of
//! the item headers that needs no allocation and refuses, before anything is
//! built: input over the size limit, nesting over [`MAX_CBOR_DEPTH`], a
//! container with more than [`MAX_CBOR_CONTAINER_ITEMS`] items, any length
//! that claims more bytes or items than the input still holds, indefinite
//! lengths, reserved header values and trailing bytes. Only then does
//! ciborium decode; a length it reads can therefore never exceed the input.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::{MAX_CBOR_CONTAINER_ITEMS, MAX_CBOR_DEPTH};

/// Why bytes are not acceptable CBOR for us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("input is {actual} bytes, the limit for this object is {limit} bytes")]
    TooLarge { actual: usize, limit: usize },
    #[error("input is empty")]
    Empty,
    #[error("CBOR nesting deeper than {limit} levels at byte {offset}")]
    TooDeep { offset: usize, limit: usize },
    #[error("CBOR item at byte {offset} claims {claimed} bytes or items, only {available} remain")]
    LengthBeyondInput {
        offset: usize,
        claimed: u64,
        available: usize,
    },
    #[error("CBOR container at byte {offset} has {count} items, the limit is {limit}")]
    TooManyItems {
        offset: usize,
        count: u64,
        limit: u64,
    },
    #[error("CBOR indefinite-length item at byte {offset}: only definite lengths are accepted")]
    IndefiniteLength { offset: usize },
    #[error("CBOR reserved header value at byte {offset}")]
    Reserved { offset: usize },
    #[error("CBOR input ends inside the item that starts at byte {offset}")]
    Truncated { offset: usize },
    #[error("{count} bytes after the end of the CBOR item")]
    TrailingBytes { count: usize },
    #[error("CBOR text string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("CBOR does not match the schema: {0}")]
    Schema(String),
}

impl CborError {
    /// The reason code a rejection for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            CborError::TooLarge { .. }
            | CborError::TooManyItems { .. }
            | CborError::TooDeep { .. } => ReasonCode::TooLarge,
            _ => ReasonCode::Malformed,
        }
    }
}

/// Reads the argument of the header at `pos`; returns (major, argument, header length).
fn read_header(input: &[u8], pos: usize) -> Result<(u8, u64, usize, u8), CborError> {
    let initial = *input.get(pos).ok_or(CborError::Truncated { offset: pos })?;
    let major = initial >> 5;
    let info = initial & 0x1f;
    let (argument, len) = match info {
        0..=23 => (u64::from(info), 1),
        24..=27 => {
            let n = 1usize << (info - 24);
            let bytes = input
                .get(pos + 1..pos + 1 + n)
                .ok_or(CborError::Truncated { offset: pos })?;
            let mut value = 0u64;
            for b in bytes {
                value = value << 8 | u64::from(*b);
            }
            (value, 1 + n)
        }
        28..=30 => return Err(CborError::Reserved { offset: pos }),
        _ => return Err(CborError::IndefiniteLength { offset: pos }),
    };
    Ok((major, argument, len, info))
}

/// How many items the item at `start` (header read, `pos` after it)
/// contains; moves `pos` past a byte or text string's content.
fn item_children(
    input: &[u8],
    start: usize,
    pos: &mut usize,
    (major, argument, info): (u8, u64, u8),
) -> Result<u64, CborError> {
    let remaining = input.len() - *pos;
    Ok(match major {
        0 | 1 => 0,
        2 | 3 => {
            if argument > remaining as u64 {
                return Err(CborError::LengthBeyondInput {
                    offset: start,
                    claimed: argument,
                    available: remaining,
                });
            }
            let end = *pos + argument as usize;
            if major == 3 && std::str::from_utf8(&input[*pos..end]).is_err() {
                return Err(CborError::InvalidUtf8 { offset: start });
            }
            *pos = end;
            0
        }
        4 | 5 => {
            let items = if major == 5 {
                argument.saturating_mul(2)
            } else {
                argument
            };
            if argument > MAX_CBOR_CONTAINER_ITEMS {
                return Err(CborError::TooManyItems {
                    offset: start,
                    count: argument,
                    limit: MAX_CBOR_CONTAINER_ITEMS,
                });
            }
            // Every item takes at least one byte.
            if items > remaining as u64 {
                return Err(CborError::LengthBeyondInput {
                    offset: start,
                    claimed: items,
                    available: remaining,
                });
            }
            items
        }
        6 => 1,
        _ => {
            // Major 7: simple values and floats; 24 takes one more byte,
            // already consumed by the header. Values 20..=23 and the
            // float widths are all self-contained.
            if info == 24 && argument < 32 {
                return Err(CborError::Reserved { offset: start });
            }
            0
        }
    })
}

/// Walks the whole input once, checking every limit. No recursion, no
/// allocation beyond a fixed-size stack of pending item counts.
pub fn prescan(input: &[u8], max_bytes: usize) -> Result<(), CborError> {
    if input.len() > max_bytes {
        return Err(CborError::TooLarge {
            actual: input.len(),
            limit: max_bytes,
        });
    }
    if input.is_empty() {
        return Err(CborError::Empty);
    }
    // Items still expected at each open level; level 0 is the single top item.
    let mut pending = [0u64; MAX_CBOR_DEPTH + 1];
    let mut depth = 0usize;
    pending[0] = 1;
    let mut pos = 0usize;
    loop {
        while pending[depth] == 0 {
            if depth == 0 {
                if pos != input.len() {
                    return Err(CborError::TrailingBytes {
                        count: input.len() - pos,
                    });
                }
                return Ok(());
            }
            depth -= 1;
        }
        pending[depth] -= 1;
        let start = pos;
        let (major, argument, header_len, info) = read_header(input, pos)?;
        pos += header_len;
        let children = item_children(input, start, &mut pos, (major, argument, info))?;
        if (4..=6).contains(&major) {
            if depth + 1 > MAX_CBOR_DEPTH {
                return Err(CborError::TooDeep {
                    offset: start,
                    limit: MAX_CBOR_DEPTH,
                });
            }
            depth += 1;
            pending[depth] = children;
        }
    }
}

/// Replaces the inside of quoted text in a decoder message, so that an error
/// about a string never carries the string (it could be a name or a letter).
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(200));
    let mut inside = false;
    for c in message.chars() {
        if c == '"' || c == '`' {
            if !inside {
                out.push(c);
                out.push('…');
            } else {
                out.push(c);
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
        if out.len() > 200 {
            out.push('…');
            break;
        }
    }
    out
}

/// Encodes a value as CBOR. Our types encode struct fields in declaration
/// order with the shortest integer and length forms (RFC 8949 §4.2.1).
pub fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and our types have no map keys that
    // serde could refuse; an error here would be a bug in this crate.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        debug_assert!(false, "CBOR encoding of an in-memory value failed: {e}");
    }
    out
}

/// Decodes a value after [`prescan`] accepted the bytes.
pub fn from_slice<T: DeserializeOwned>(input: &[u8], max_bytes: usize) -> Result<T, CborError> {
    prescan(input, max_bytes)?;
    ciborium::de::from_reader_with_recursion_limit(input, MAX_CBOR_DEPTH + 2).map_err(|e| {
        CborError::Schema(match e {
            ciborium::de::Error::Semantic(offset, message) => match offset {
                Some(o) => format!("at byte {o}: {}", redact_quoted(&message)),
                None => redact_quoted(&message),
            },
            ciborium::de::Error::Syntax(offset) => format!("syntax error at byte {offset}"),
            ciborium::de::Error::RecursionLimitExceeded => "nesting too deep".to_owned(),
            ciborium::de::Error::Io(_) => "input ended early".to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_items() {
        prescan(&[0x00], 10).unwrap();
        prescan(&[0x83, 0x01, 0x02, 0x03], 10).unwrap();
        prescan(&[0xa1, 0x61, b'a', 0xf5], 10).unwrap();
        prescan(&[0xd2, 0x80], 10).unwrap();
    }

    #[test]
    fn refuses_by_limit() {
        assert!(matches!(
            prescan(&[0; 11], 10),
            Err(CborError::TooLarge {
                actual: 11,
                limit: 10
            })
        ));
        assert_eq!(prescan(&[], 10), Err(CborError::Empty));
        assert_eq!(
            prescan(&[0x01, 0x02], 10),
            Err(CborError::TrailingBytes { count: 1 })
        );
        assert_eq!(
            prescan(&[0x9f, 0xff], 10),
            Err(CborError::IndefiniteLength { offset: 0 })
        );
        assert_eq!(prescan(&[0x1c], 10), Err(CborError::Reserved { offset: 0 }));
        assert_eq!(
            prescan(&[0x62, 0xff, 0xfe], 10),
            Err(CborError::InvalidUtf8 { offset: 0 })
        );
        assert_eq!(
            prescan(&[0x82, 0x01], 10),
            Err(CborError::LengthBeyondInput {
                offset: 0,
                claimed: 2,
                available: 1
            })
        );
    }

    #[test]
    fn depth_edge() {
        let mut at_limit = vec![0x81; MAX_CBOR_DEPTH];
        at_limit.push(0x00);
        prescan(&at_limit, 1 << 20).unwrap();
        let mut over = vec![0x81; MAX_CBOR_DEPTH + 1];
        over.push(0x00);
        assert_eq!(
            prescan(&over, 1 << 20),
            Err(CborError::TooDeep {
                offset: MAX_CBOR_DEPTH,
                limit: MAX_CBOR_DEPTH
            })
        );
    }

    #[test]
    fn container_count_edge() {
        // An array header claiming one item more than the limit.
        let count = MAX_CBOR_CONTAINER_ITEMS + 1;
        let mut input = vec![0x9a];
        input.extend_from_slice(&(count as u32).to_be_bytes());
        input.extend(std::iter::repeat_n(0u8, count as usize));
        assert!(matches!(
            prescan(&input, 1 << 30),
            Err(CborError::TooManyItems { .. })
        ));
        let count = MAX_CBOR_CONTAINER_ITEMS;
        let mut input = vec![0x9a];
        input.extend_from_slice(&(count as u32).to_be_bytes());
        input.extend(std::iter::repeat_n(0u8, count as usize));
        prescan(&input, 1 << 30).unwrap();
    }

    #[test]
    fn schema_errors_do_not_repeat_strings() {
        // A text where an integer is expected: serde names the string.
        let input = to_vec(&"secret letter text");
        let err = from_slice::<u32>(&input, 100).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
