//! Identifiers: replica (device), contact and item ids are 16 random bytes; an op id is the
//! domain-separated blake3 hash of the op's exact encoded bytes.
//!
//! All ids display as lowercase hex and parse from full-length hex. Prefix lookup is a store
//! concern (it needs the set of known ids) and lives there; [`IdPrefix`] is the parsed form.

use std::fmt;

use bincode::{Decode, Encode};

/// Why a string is not a valid id or id prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdParseError {
    /// The string has the wrong number of hex digits.
    #[error("expected {expected} hex digits, got {got}")]
    Length {
        /// Digits a full id has.
        expected: usize,
        /// Digits given.
        got: usize,
    },
    /// A character is not a hex digit.
    #[error("'{0}' is not a hex digit")]
    NotHex(char),
    /// An empty prefix matches everything and is refused.
    #[error("an id prefix needs at least one hex digit")]
    Empty,
}

/// The operating system's random number generator failed (it essentially never does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

impl RandomError {
    pub(crate) fn new(reason: String) -> Self {
        Self(reason)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

fn hex_digit(c: char) -> Result<u8, IdParseError> {
    c.to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
        .ok_or(IdParseError::NotHex(c))
}

pub(crate) fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], IdParseError> {
    let digits: Vec<char> = s.chars().collect();
    if digits.len() != 2 * N {
        return Err(IdParseError::Length {
            expected: 2 * N,
            got: digits.len(),
        });
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        if let [hi, lo] = pair {
            *byte = (hex_digit(*hi)? << 4) | hex_digit(*lo)?;
        }
    }
    Ok(out)
}

/// Writes bytes as lowercase hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Lowercase hex of a byte string.
pub fn to_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh id from the operating system's random number generator.
            pub fn random() -> Result<Self, RandomError> {
                random_bytes().map(Self)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Whether the id's hex form starts with `prefix`.
            pub fn matches(&self, prefix: &IdPrefix) -> bool {
                prefix.matches(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0)?;
                write!(f, ")")
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex(s).map(Self)
            }
        }
    };
}

random_id!(
    /// A device id: the author of ops. Derived from the device's public key
    /// ([`crate::key::PublicKey::device`]) for every author of a format-2 op; format-1 authors
    /// had random ids.
    DeviceId
);
random_id!(
    /// A contact id, chosen at random by the device that created the contact.
    ContactId
);
random_id!(
    /// A multi-valued item's id (one phone, e-mail, address or URL), chosen at random when it is
    /// added, so items added concurrently on two devices never collide.
    ItemId
);

/// The blake3 derive-key context for op ids. Changing it changes every op id: it is part of
/// the format (docs/FORMAT.md).
pub const OP_ID_CONTEXT: &str = "cardlog 2026-11-22 op id v1";

/// An op id: blake3 in derive-key mode with [`OP_ID_CONTEXT`] over the op's exact encoded bytes
/// (version byte included).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct OpId(pub [u8; 32]);

impl OpId {
    /// Hashes exact op bytes into their id.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        // `new_derive_key` hashes the context string on every call: one compression more per
        // op (a fifth of hashing a typical 150-byte op). The context key is hashed once instead;
        // the ids are the same (the golden vectors in docs/FORMAT.md hold them).
        use blake3::hazmat::HasherExt;
        static CONTEXT_KEY: std::sync::LazyLock<blake3::hazmat::ContextKey> =
            std::sync::LazyLock::new(|| blake3::hazmat::hash_derive_key_context(OP_ID_CONTEXT));
        let mut hasher = blake3::Hasher::new_from_context_key(&CONTEXT_KEY);
        hasher.update(bytes);
        Self(*hasher.finalize().as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 bytes as hex: what humans read in listings.
    pub fn short(&self) -> String {
        to_hex(self.0.get(..8).unwrap_or(&self.0))
    }

    /// Whether the id's hex form starts with `prefix`.
    pub fn matches(&self, prefix: &IdPrefix) -> bool {
        prefix.matches(&self.0)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({})", self.short())
    }
}

impl std::str::FromStr for OpId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex(s).map(Self)
    }
}

/// A parsed hex prefix of an id (any kind), for "unique prefix" lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix {
    nibbles: Vec<u8>,
}

impl IdPrefix {
    /// Parses a non-empty hex prefix (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, IdParseError> {
        if s.is_empty() {
            return Err(IdParseError::Empty);
        }
        if s.len() > 64 {
            return Err(IdParseError::Length {
                expected: 64,
                got: s.chars().count(),
            });
        }
        let nibbles = s.chars().map(hex_digit).collect::<Result<_, _>>()?;
        Ok(Self { nibbles })
    }

    /// Whether `bytes` (an id) starts with this prefix.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        if self.nibbles.len() > bytes.len() * 2 {
            return false;
        }
        self.nibbles.iter().enumerate().all(|(i, n)| {
            let byte = bytes.get(i / 2).copied().unwrap_or(0);
            let got = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            got == *n
        })
    }

    /// The bytes fully given by the prefix (its first `len / 2` bytes): every matching id starts
    /// with them, so a sorted index can be scanned from there.
    pub fn whole_bytes(&self) -> Vec<u8> {
        self.nibbles
            .chunks_exact(2)
            .map(|pair| match pair {
                [hi, lo] => (hi << 4) | lo,
                _ => 0,
            })
            .collect()
    }

    /// Number of hex digits.
    pub fn len(&self) -> usize {
        self.nibbles.len()
    }

    /// Always false: an empty prefix cannot be parsed.
    pub fn is_empty(&self) -> bool {
        self.nibbles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        // Display and FromStr are inverses, and malformed input names its fault.
        let id = ContactId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<ContactId>(), Ok(id));
        assert_eq!(
            "abc".parse::<ContactId>(),
            Err(IdParseError::Length {
                expected: 32,
                got: 3
            })
        );
        assert_eq!(
            "zz".repeat(16).parse::<ContactId>(),
            Err(IdParseError::NotHex('z'))
        );
        assert_eq!(
            "é".parse::<DeviceId>().unwrap_err(),
            IdParseError::Length {
                expected: 32,
                got: 1
            }
        );
    }

    #[test]
    fn prefixes_match_by_nibble() {
        // Odd-length prefixes compare the high nibble of the last byte.
        let id = ItemId([0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(id.matches(&IdPrefix::parse("1").unwrap()));
        assert!(id.matches(&IdPrefix::parse("123").unwrap()));
        assert!(id.matches(&IdPrefix::parse("1234").unwrap()));
        assert!(!id.matches(&IdPrefix::parse("124").unwrap()));
        assert!(!id.matches(&IdPrefix::parse(&"0".repeat(33)).unwrap()));
        assert_eq!(IdPrefix::parse("123").unwrap().whole_bytes(), [0x12]);
        assert_eq!(IdPrefix::parse("1234").unwrap().whole_bytes(), [0x12, 0x34]);
        assert_eq!(IdPrefix::parse(""), Err(IdParseError::Empty));
    }

    #[test]
    fn op_id_is_domain_separated() {
        // The id is not the plain blake3 of the bytes, so ids cannot collide with other hashes.
        let id = OpId::of_bytes(b"x");
        assert_ne!(id.0, *blake3::hash(b"x").as_bytes());
        assert_eq!(id, OpId::of_bytes(b"x"));
    }

    #[test]
    fn op_id_is_blake3_derive_key_over_the_bytes() {
        // The context key is hashed once and reused: the id must still be blake3's own
        // derive_key of the bytes, for inputs within one block, one chunk and several chunks.
        for len in [0usize, 1, 63, 64, 65, 150, 1023, 1024, 1025, 5000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            assert_eq!(
                OpId::of_bytes(&bytes).0,
                blake3::derive_key(OP_ID_CONTEXT, &bytes),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(DeviceId::random().unwrap(), DeviceId::random().unwrap());
    }
}
