//! Device keys and chain-tip signatures (docs/SECURITY.md, "Keys and signatures";
//! docs/FORMAT.md, "Signatures").
//!
//! Every device holds an ed25519 key pair. Its [`DeviceId`] is derived from the public key, so
//! an id names exactly one key. A device signs the id of the last op of each of its saves (its
//! chain tip); because every op names its predecessor's id, one signature covers the author's
//! whole chain up to that op.
//!
//! Verification is `ed25519_dalek::VerifyingKey::verify_strict`, and only that, one signature
//! at a time: it rejects non-canonical encodings and small-order keys and points, and every
//! device running it reaches the same decision for the same bytes. Batch verification (whose
//! acceptance differs from single verification on such edge cases) is never used.

use std::fmt;

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::id::{to_hex, write_hex, DeviceId, OpId, RandomError};

/// The blake3 derive-key context turning a public key into its device id (docs/FORMAT.md).
pub const DEVICE_ID_CONTEXT: &str = "cardlog 2026-12-02 device id v2";
/// The blake3 derive-key context turning a founder's key and nonce into a book id.
pub const BOOK_ID_CONTEXT: &str = "cardlog 2026-12-02 book id v2";
/// What a chain-tip signature signs ahead of the book id and op id: no signature cardlog makes
/// can be taken for one made for another purpose.
pub const TIP_SIGNATURE_PREFIX: &[u8] = b"cardlog 2026-12-02 chain tip v2\0";
/// What a session-key certificate signs ahead of the book id and the session key: the device's
/// statement that this X25519 key speaks for it in sync sessions of that book (docs/FORMAT.md,
/// "Session handshake").
pub const SESSION_KEY_PREFIX: &[u8] = b"cardlog 2026-12-03 session key v1\0";
/// What a device's certificate for sessions of any book signs ahead of the session key: the
/// device's statement that this X25519 key speaks for it whichever book a session is of. A
/// relay keeping many books answers an addressed handshake with it before it knows the book
/// (docs/SYNC.md, "Handshake").
pub const ANY_BOOK_SESSION_KEY_PREFIX: &[u8] = b"cardlog 2026-12-05 session key, any book v1\0";
/// The blake3 derive-key context turning a device's secret seed into its X25519 session key.
pub const SESSION_KEY_CONTEXT: &str = "cardlog 2026-12-03 session key v1";

/// An ed25519 public key (32 bytes, the compressed point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Signature(pub [u8; 64]);

/// An address book's id: derived from its founder's public key and a random nonce, so only the
/// holder of the founder's key can write the op that founds it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct BookId(pub [u8; 16]);

/// An author's signature of its op at `seq`, whose id is `op`: it covers the author's chain
/// from seq 1 to `seq` (docs/FORMAT.md, "Signatures").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignedTip {
    /// The author.
    pub author: DeviceId,
    /// The author's public key (its device id is the author's).
    pub key: PublicKey,
    /// The signed op's seq.
    pub seq: u64,
    /// The signed op's id.
    pub op: OpId,
    /// The signature ([`DeviceKey::sign_tip`]).
    pub signature: Signature,
}

/// Why a key or signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The 32 bytes are not a point on the curve, or a small-order (weak) one.
    #[error("not a usable ed25519 public key")]
    BadKey,
    /// The signature does not verify under the key for this book and op.
    #[error("the signature does not verify")]
    BadSignature,
}

impl PublicKey {
    /// The device id this key stands for.
    pub fn device(&self) -> DeviceId {
        let hash = blake3::derive_key(DEVICE_ID_CONTEXT, &self.0);
        let mut id = [0u8; 16];
        id.copy_from_slice(hash.get(..16).unwrap_or(&[0u8; 16]));
        DeviceId(id)
    }

    /// The key as a verifier: refused when the bytes are not a point or are a weak key.
    fn verifier(&self) -> Result<VerifyingKey, KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadKey)?;
        if key.is_weak() {
            return Err(KeyError::BadKey);
        }
        Ok(key)
    }

    /// Whether the key can verify anything at all (a point, not of small order).
    pub fn check(&self) -> Result<(), KeyError> {
        self.verifier().map(|_| ())
    }

    /// Checks that `signature` is this key's signature of chain tip `op` in `book`.
    pub fn verify_tip(
        &self,
        book: &BookId,
        op: &OpId,
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let key = self.verifier()?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&tip_message(book, op), &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl PublicKey {
    /// Checks that `signature` is this key's certificate of X25519 session key `session` for
    /// sync sessions of `book` ([`DeviceKey::certify_session_key`]).
    pub fn verify_session_key(
        &self,
        book: &BookId,
        session: &[u8; 32],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let key = self.verifier()?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&session_key_message(book, session), &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl PublicKey {
    /// Checks that `signature` is this key's certificate of X25519 session key `session` for
    /// sync sessions of any book ([`DeviceKey::certify_session_key_any_book`]).
    pub fn verify_session_key_any_book(
        &self,
        session: &[u8; 32],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let key = self.verifier()?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&any_book_session_key_message(session), &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// The bytes a certificate for sessions of any book signs: prefix, X25519 public key.
fn any_book_session_key_message(session: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ANY_BOOK_SESSION_KEY_PREFIX.len() + 32);
    message.extend_from_slice(ANY_BOOK_SESSION_KEY_PREFIX);
    message.extend_from_slice(session);
    message
}

/// The bytes a session-key certificate signs: prefix, book id, X25519 public key.
fn session_key_message(book: &BookId, session: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SESSION_KEY_PREFIX.len() + 48);
    message.extend_from_slice(SESSION_KEY_PREFIX);
    message.extend_from_slice(&book.0);
    message.extend_from_slice(session);
    message
}

/// The bytes a chain-tip signature signs: prefix, book id, op id.
fn tip_message(book: &BookId, op: &OpId) -> Vec<u8> {
    let mut message = Vec::with_capacity(TIP_SIGNATURE_PREFIX.len() + 48);
    message.extend_from_slice(TIP_SIGNATURE_PREFIX);
    message.extend_from_slice(&book.0);
    message.extend_from_slice(&op.0);
    message
}

impl BookId {
    /// The id of the book founded by `founder` with `nonce`.
    pub fn founded_by(founder: &PublicKey, nonce: &[u8; 16]) -> Self {
        let mut input = [0u8; 48];
        let (key, rest) = input.split_at_mut(32);
        key.copy_from_slice(&founder.0);
        rest.copy_from_slice(nonce);
        let hash = blake3::derive_key(BOOK_ID_CONTEXT, &input);
        let mut id = [0u8; 16];
        id.copy_from_slice(hash.get(..16).unwrap_or(&[0u8; 16]));
        Self(id)
    }
}

/// A device's secret key. Never displayed, never encoded into anything that leaves the device;
/// the store keeps its seed in a file only its owner can read (docs/SECURITY.md).
pub struct DeviceKey {
    signing: SigningKey,
}

impl DeviceKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self, RandomError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| RandomError::new(e.to_string()))?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// The key with this 32-byte secret seed (as [`DeviceKey::seed`] gave it).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed, for the store's key file only.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// This key's device id.
    pub fn device(&self) -> DeviceId {
        self.public().device()
    }

    /// Signs chain tip `op` in `book`.
    pub fn sign_tip(&self, book: &BookId, op: &OpId) -> Signature {
        Signature(self.signing.sign(&tip_message(book, op)).to_bytes())
    }

    /// The secret of this device's X25519 session key (the Noise static key of its sync
    /// sessions), derived from the seed: one key file serves both, and the two keys are
    /// independent (a different algorithm's key is never reused).
    pub fn session_secret(&self) -> [u8; 32] {
        blake3::derive_key(SESSION_KEY_CONTEXT, &self.signing.to_bytes())
    }

    /// Certifies X25519 public key `session` as this device's session key in `book`.
    pub fn certify_session_key(&self, book: &BookId, session: &[u8; 32]) -> Signature {
        Signature(
            self.signing
                .sign(&session_key_message(book, session))
                .to_bytes(),
        )
    }

    /// Certifies X25519 public key `session` as this device's session key in sessions of any
    /// book (what a relay of many books shows before it knows a session's book).
    pub fn certify_session_key_any_book(&self, session: &[u8; 32]) -> Signature {
        Signature(
            self.signing
                .sign(&any_book_session_key_message(session))
                .to_bytes(),
        )
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never reaches a log line or a panic message.
        write!(f, "DeviceKey(device {})", self.device())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", to_hex(&self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", to_hex(self.0.get(..8).unwrap_or(&[])))
    }
}

impl fmt::Display for BookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for BookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BookId({})", to_hex(&self.0))
    }
}

impl std::str::FromStr for BookId {
    type Err = crate::id::IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::id::parse_hex(s).map(Self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn key(n: u8) -> DeviceKey {
        DeviceKey::from_seed(&[n; 32])
    }

    #[test]
    fn a_tip_signature_verifies_only_for_its_key_book_and_op() {
        let (a, b) = (key(1), key(2));
        let book = BookId([7; 16]);
        let op = OpId([9; 32]);
        let sig = a.sign_tip(&book, &op);
        assert_eq!(a.public().verify_tip(&book, &op, &sig), Ok(()));
        assert_eq!(
            b.public().verify_tip(&book, &op, &sig),
            Err(KeyError::BadSignature)
        );
        assert_eq!(
            a.public().verify_tip(&BookId([8; 16]), &op, &sig),
            Err(KeyError::BadSignature)
        );
        assert_eq!(
            a.public().verify_tip(&book, &OpId([8; 32]), &sig),
            Err(KeyError::BadSignature)
        );
        let mut flipped = sig;
        flipped.0[10] ^= 1;
        assert_eq!(
            a.public().verify_tip(&book, &op, &flipped),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn signatures_are_deterministic_and_ids_follow_keys() {
        // ed25519 signing is deterministic: the golden vectors in tests/format.rs rely on it.
        let book = BookId([7; 16]);
        let op = OpId([9; 32]);
        assert_eq!(key(1).sign_tip(&book, &op), key(1).sign_tip(&book, &op));
        assert_ne!(key(1).device(), key(2).device());
        assert_eq!(key(1).device(), key(1).public().device());
        assert_eq!(
            key(1).device().0[..],
            blake3::derive_key(DEVICE_ID_CONTEXT, &key(1).public().0)[..16]
        );
        let seed = key(3).seed();
        assert_eq!(DeviceKey::from_seed(&seed).public(), key(3).public());
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order) and a non-point are not keys anyone can hold.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey(identity).check(), Err(KeyError::BadKey));
        let sig = Signature([0; 64]);
        assert_eq!(
            PublicKey(identity).verify_tip(&BookId([0; 16]), &OpId([0; 32]), &sig),
            Err(KeyError::BadKey)
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKey(off_curve).check(), Err(KeyError::BadKey));
        assert_eq!(key(1).public().check(), Ok(()));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = key(5);
        let shown = format!("{k:?}");
        assert!(!shown.contains(&to_hex(&k.seed())));
        assert!(shown.contains(&k.device().to_string()));
    }

    #[test]
    fn book_ids_commit_to_founder_and_nonce() {
        let a = BookId::founded_by(&key(1).public(), &[0; 16]);
        assert_ne!(a, BookId::founded_by(&key(2).public(), &[0; 16]));
        assert_ne!(a, BookId::founded_by(&key(1).public(), &[1; 16]));
        assert_eq!(a.to_string().parse::<BookId>(), Ok(a));
    }
}
