//! Encrypted, mutually authenticated sessions: the handshake that proves to each side which
//! device of its address book the other is, and the sealed channel that then carries every
//! [`crate::session::Session`] message (docs/SYNC.md, "Handshake"; docs/SECURITY.md,
//! "Sessions"). Sans-IO like the session: [`Handshake`] and [`Channel`] only turn bytes into
//! bytes, and [`crate::transport::run_secure`] drives them over any
//! [`crate::transport::Transport`].
//!
//! The handshake is Noise XX with a pre-shared key derived from the book's id
//! (`Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s`, through `snow`), so only devices that know the book
//! id get past message 1, and only devices of one book complete it:
//!
//! ```text
//! I → R  "CLNX" 1  psk, e                                  53 bytes
//! R → I  e, ee, s, es, {R's device key, certificate}      192 bytes
//!        I checks R: the relay it expects, a member of its book (or, while it knows no
//!        members, the device it paired with)
//! I → R  s, se, {I's device key, certificate}              160 bytes
//!        R checks I likewise
//! ```
//!
//! `s` is the device's X25519 session key, derived from its device key's seed; the certificate
//! is the device's ed25519 signature of it for the book ([`DeviceKey::certify_session_key`]),
//! so the Noise handshake proves possession of the session key and the certificate binds it to
//! the device id that membership names. A side that refuses the other sends nothing more (the
//! responder sends one sealed `Abort` saying why, readable only by the refused device).
//!
//! A handshake addressed to one device (version 2: an initiator that expects its paired relay,
//! [`Expect::Device`]) is keyed by that device's id instead of the book's, so a relay keeping
//! many books can answer it before it knows the book. The relay shows its certificate for any
//! book ([`DeviceKey::certify_session_key_any_book`]); the initiator names its book in message
//! 3, sealed to the relay it has just authenticated, so only that relay learns it (the device
//! id itself is no secret: an impostor that knows it answers message 1 and is caught by the
//! initiator's check of the key it shows in message 2):
//!
//! ```text
//! I → R  "CLNX" 2  psk, e                                  53 bytes
//! R → I  e, ee, s, es, {R's device key, any-book cert}    192 bytes
//! I → R  s, se, {I's device key, certificate, book id}    176 bytes
//! ```
//!
//! After the handshake each session message travels sealed: its length (4 bytes, big-endian)
//! and bytes, cut into pieces of at most 65,519 bytes, each encrypted with the next nonce of
//! the direction's key (ChaCha20-Poly1305, 16-byte tag). A flipped, dropped, reordered or
//! replayed message fails its tag and ends the session before it reaches the session layer.

use std::fmt;

use cardlog_core::{BookId, DeviceId, DeviceKey, PublicKey, Signature};
use curve25519_dalek::MontgomeryPoint;
use snow::{HandshakeState, TransportState};

use crate::error::{HandshakeError, TransportError};
use crate::wire::message;

/// The Noise protocol name.
pub const PROTOCOL: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// The blake3 derive-key context turning a book id into the handshake's pre-shared key.
pub const BOOK_PSK_CONTEXT: &str = "cardlog 2026-12-03 session psk v1";
/// The blake3 derive-key context turning the responder's device id into the pre-shared key of
/// an addressed handshake.
pub const DEVICE_PSK_CONTEXT: &str = "cardlog 2026-12-05 addressed session psk v2";
/// The version of a handshake of one book: both sides know the book id, which keys message 1.
pub const HANDSHAKE_VERSION_BOOK: u8 = 1;
/// The version of a handshake addressed to one device (a paired relay, or the device a new
/// member pairs with): its device id keys message 1, and the initiator names the book in
/// message 3, so a relay can keep many books.
pub const HANDSHAKE_VERSION_ADDRESSED: u8 = 2;
/// The highest handshake version this build speaks (it speaks every one from 1).
pub const HANDSHAKE_VERSION: u8 = HANDSHAKE_VERSION_ADDRESSED;
/// The first bytes of a handshake.
const MAGIC: &[u8; 4] = b"CLNX";
/// The first bytes of an unencrypted sync message (an older cardlog).
const PLAIN_MAGIC: &[u8; 4] = b"CLSY";
/// The prologue ahead of the book id: both sides must agree on it byte for byte.
const PROLOGUE_PREFIX: &[u8] = b"cardlog 2026-12-03 sync session v1\0";
/// The prologue of an addressed handshake, ahead of the responder's device id.
const PROLOGUE_ADDRESSED_PREFIX: &[u8] = b"cardlog 2026-12-05 addressed sync session v2\0";
/// A device key and its certificate of the session key, the payload of messages 2 and 3.
const CERTIFICATE_BYTES: usize = 32 + 64;
/// Message 3 of an addressed handshake also names the book.
const BOOK_BYTES: usize = 16;
/// Noise's largest message, and the AEAD tag each carries.
const NOISE_MESSAGE_MAX: usize = 65_535;
const TAG_BYTES: usize = 16;
/// Plaintext bytes per sealed piece.
const PIECE_PLAIN_MAX: usize = NOISE_MESSAGE_MAX - TAG_BYTES;
/// The handshake messages' sizes (message 1's empty payload carries a tag: the psk keys it).
const MESSAGE_1_BYTES: usize = MAGIC.len() + 1 + 32 + TAG_BYTES;
const MESSAGE_2_BYTES: usize = 32 + (32 + TAG_BYTES) + (CERTIFICATE_BYTES + TAG_BYTES);
const MESSAGE_3_BYTES: usize = (32 + TAG_BYTES) + (CERTIFICATE_BYTES + TAG_BYTES);
const MESSAGE_3_ADDRESSED_BYTES: usize = MESSAGE_3_BYTES + BOOK_BYTES;
/// The largest handshake message: what a transport is asked to take before anyone is
/// authenticated.
pub const HANDSHAKE_MESSAGE_MAX: usize = MESSAGE_2_BYTES;
/// The bytes of a whole handshake of one book, both ways.
pub const HANDSHAKE_BYTES: usize = MESSAGE_1_BYTES + MESSAGE_2_BYTES + MESSAGE_3_BYTES;
/// The bytes of a whole addressed handshake, both ways.
pub const HANDSHAKE_ADDRESSED_BYTES: usize =
    MESSAGE_1_BYTES + MESSAGE_2_BYTES + MESSAGE_3_ADDRESSED_BYTES;

/// How many bytes a message of `plain` bytes takes sealed.
pub const fn sealed_len(plain: usize) -> usize {
    let framed = plain + 4;
    framed + framed.div_ceil(PIECE_PLAIN_MAX) * TAG_BYTES
}

/// Who a replica (or a relay) is in sessions: its X25519 session key and the certificates
/// binding that key to its device key, for its book and for any book.
#[derive(Clone)]
pub struct Identity {
    book: Option<BookId>,
    device: DeviceId,
    secret: [u8; 32],
    /// The certificate for sessions of `book` (handshakes of one book, and message 3).
    certificate: [u8; CERTIFICATE_BYTES],
    /// The certificate for sessions of any book (message 2 of an addressed handshake).
    any_book: [u8; CERTIFICATE_BYTES],
}

fn certificate(key: &DeviceKey, signature: &Signature) -> [u8; CERTIFICATE_BYTES] {
    let mut certificate = [0u8; CERTIFICATE_BYTES];
    let (k, s) = certificate.split_at_mut(32);
    k.copy_from_slice(&key.public().0);
    s.copy_from_slice(&signature.0);
    certificate
}

impl Identity {
    /// The identity of the device holding `key`, for sessions of `book`.
    pub fn new(book: BookId, key: &DeviceKey) -> Self {
        let mut identity = Self::any_book(key);
        let public = MontgomeryPoint::mul_base_clamped(identity.secret).to_bytes();
        identity.certificate = certificate(key, &key.certify_session_key(&book, &public));
        identity.book = Some(book);
        identity
    }

    /// The identity of the device holding `key` with no book of its own: a relay keeping many
    /// books, which answers only handshakes addressed to it and learns each session's book
    /// from the initiator's message 3.
    pub fn any_book(key: &DeviceKey) -> Self {
        let secret = key.session_secret();
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        let any_book = certificate(key, &key.certify_session_key_any_book(&public));
        Self {
            book: None,
            device: key.device(),
            secret,
            certificate: [0u8; CERTIFICATE_BYTES],
            any_book,
        }
    }

    /// The book whose sessions this identity takes part in; `None` for a relay of many books.
    pub fn book(&self) -> Option<BookId> {
        self.book
    }

    /// The device it speaks for.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    fn book_or_refuse(&self) -> Result<BookId, HandshakeError> {
        self.book.ok_or(HandshakeError::NoBook)
    }

    /// The Noise state of a handshake of `book`, or addressed to `device`.
    fn builder_state(
        &self,
        scope: Scope,
        initiator: bool,
    ) -> Result<HandshakeState, HandshakeError> {
        let params = PROTOCOL
            .parse()
            .map_err(|e: snow::Error| HandshakeError::Noise(e.to_string()))?;
        let (prologue, psk) = match scope {
            Scope::Book(book) => {
                let mut p = PROLOGUE_PREFIX.to_vec();
                p.extend_from_slice(&book.0);
                (p, blake3::derive_key(BOOK_PSK_CONTEXT, &book.0))
            }
            Scope::Addressed(device) => {
                let mut p = PROLOGUE_ADDRESSED_PREFIX.to_vec();
                p.extend_from_slice(&device.0);
                (p, blake3::derive_key(DEVICE_PSK_CONTEXT, &device.0))
            }
        };
        let builder = snow::Builder::new(params)
            .local_private_key(&self.secret)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.psk(0, &psk))
            .map_err(noise)?;
        if initiator {
            builder.build_initiator().map_err(noise)
        } else {
            builder.build_responder().map_err(noise)
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session secret never reaches a log line.
        match self.book {
            Some(book) => write!(f, "Identity(device {}, book {book})", self.device),
            None => write!(f, "Identity(device {}, any book)", self.device),
        }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.secret.fill(0);
    }
}

fn noise(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

/// What keys a handshake's message 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The book id (version 1).
    Book(BookId),
    /// The responder's device id (version 2).
    Addressed(DeviceId),
}

/// The authenticated peer of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its device id (derived from `key`).
    pub device: DeviceId,
    /// Its ed25519 device key.
    pub key: PublicKey,
}

/// What this side lets an authenticated peer do ([`crate::Gate::admit_peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Whether ops it sends are taken (false for a read-only member).
    pub push: bool,
}

/// Whom the initiator means to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// Any device the replica admits ([`crate::Gate::admit_peer`]): a handshake of the book.
    #[default]
    Member,
    /// Exactly this device (the paired relay), which the replica must also admit: a
    /// handshake addressed to it, which a relay of many books can answer.
    Device(DeviceId),
    /// Exactly this device, over a handshake of the book (version 1): what
    /// [`crate::transport::sync_tcp`] falls back to when the device at the address refuses
    /// the addressed handshake (a cardlog from before it, or another device, which the device
    /// check after message 2 then names).
    DeviceOfBook(DeviceId),
}

impl Expect {
    /// The device this side means to reach, if one.
    pub fn device(&self) -> Option<DeviceId> {
        match self {
            Expect::Member => None,
            Expect::Device(d) | Expect::DeviceOfBook(d) => Some(*d),
        }
    }
}

/// A handshake in progress (see the module docs).
pub struct Handshake {
    state: HandshakeState,
    scope: Scope,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handshake({:?})", self.scope)
    }
}

impl Scope {
    /// The book a handshake of one book is of; an addressed one learns it from message 3.
    fn book(self) -> Option<BookId> {
        match self {
            Scope::Book(book) => Some(book),
            Scope::Addressed(_) => None,
        }
    }
}

impl Handshake {
    /// Starts a handshake of this identity's book as the initiator: the state and message 1.
    pub fn initiate(identity: &Identity) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::start(identity, Scope::Book(identity.book_or_refuse()?))
    }

    /// Starts a handshake addressed to `device` as the initiator: only that device can answer
    /// (its id keys message 1), and message 3 names this identity's book to it.
    pub fn initiate_to(
        identity: &Identity,
        device: DeviceId,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        identity.book_or_refuse()?;
        Self::start(identity, Scope::Addressed(device))
    }

    fn start(identity: &Identity, scope: Scope) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut state = identity.builder_state(scope, true)?;
        let mut noise_part = [0u8; 32 + TAG_BYTES];
        let n = state.write_message(&[], &mut noise_part).map_err(noise)?;
        let mut m1 = Vec::with_capacity(MESSAGE_1_BYTES);
        m1.extend_from_slice(MAGIC);
        m1.push(match scope {
            Scope::Book(_) => HANDSHAKE_VERSION_BOOK,
            Scope::Addressed(_) => HANDSHAKE_VERSION_ADDRESSED,
        });
        m1.extend_from_slice(noise_part.get(..n).unwrap_or_default());
        Ok((Self { state, scope }, m1))
    }

    /// Answers message 1 as the responder: the state and message 2 (this side's identity,
    /// readable only by the device that sent message 1, which knows the book id, or this
    /// device's id if the handshake is addressed to it). A message 1 of another book or
    /// addressed to another device fails here ([`HandshakeError::Decrypt`] 1), before
    /// anything is sent; so does one of a book when this identity has none
    /// ([`HandshakeError::NotAddressed`]).
    pub fn answer(identity: &Identity, m1: &[u8]) -> Result<(Self, Vec<u8>), HandshakeError> {
        if m1.starts_with(PLAIN_MAGIC) {
            return Err(HandshakeError::Unencrypted);
        }
        if !m1.starts_with(MAGIC) {
            return Err(HandshakeError::NotAHandshake);
        }
        let version = m1.get(MAGIC.len()).copied().unwrap_or_default();
        let scope = match version {
            HANDSHAKE_VERSION_BOOK => {
                Scope::Book(identity.book.ok_or(HandshakeError::NotAddressed)?)
            }
            HANDSHAKE_VERSION_ADDRESSED => Scope::Addressed(identity.device),
            other => return Err(HandshakeError::Version(other, HANDSHAKE_VERSION)),
        };
        check_size(1, m1, MESSAGE_1_BYTES)?;
        let mut state = identity.builder_state(scope, false)?;
        let mut scratch = [0u8; 64];
        state
            .read_message(m1.get(MAGIC.len() + 1..).unwrap_or_default(), &mut scratch)
            .map_err(|_| HandshakeError::Decrypt(1))?;
        let shown = match scope {
            Scope::Book(_) => &identity.certificate,
            Scope::Addressed(_) => &identity.any_book,
        };
        let mut handshake = Self { state, scope };
        let m2 = handshake.write(shown, MESSAGE_2_BYTES)?;
        Ok((handshake, m2))
    }

    /// Reads message 2 as the initiator: who the responder is. Nothing more is sent unless
    /// the caller admits it and calls [`Handshake::finish`].
    pub fn read_reply(&mut self, m2: &[u8]) -> Result<Peer, HandshakeError> {
        let payload = self.read(2, m2, MESSAGE_2_BYTES)?;
        let certificate = <[u8; CERTIFICATE_BYTES]>::try_from(payload.as_slice())
            .map_err(|_| HandshakeError::Certificate)?;
        self.peer(&certificate, self.scope.book())
    }

    /// Message 3 (this side's identity, and in an addressed handshake its book) and the
    /// channel, as the initiator.
    pub fn finish(mut self, identity: &Identity) -> Result<(Vec<u8>, Channel), HandshakeError> {
        let m3 = match self.scope {
            Scope::Book(_) => self.write(&identity.certificate, MESSAGE_3_BYTES)?,
            Scope::Addressed(_) => {
                let book = identity.book_or_refuse()?;
                let mut payload = identity.certificate.to_vec();
                payload.extend_from_slice(&book.0);
                self.write(&payload, MESSAGE_3_ADDRESSED_BYTES)?
            }
        };
        Ok((m3, Channel::new(self.state)?))
    }

    /// Reads message 3 as the responder: who the initiator is, the book the session is of,
    /// and the channel.
    pub fn read_final(mut self, m3: &[u8]) -> Result<(Peer, BookId, Channel), HandshakeError> {
        let size = match self.scope {
            Scope::Book(_) => MESSAGE_3_BYTES,
            Scope::Addressed(_) => MESSAGE_3_ADDRESSED_BYTES,
        };
        let payload = self.read(3, m3, size)?;
        let (certificate, named) = payload
            .split_at_checked(CERTIFICATE_BYTES)
            .ok_or(HandshakeError::Certificate)?;
        let certificate = <[u8; CERTIFICATE_BYTES]>::try_from(certificate)
            .map_err(|_| HandshakeError::Certificate)?;
        let book = match (self.scope.book(), <[u8; BOOK_BYTES]>::try_from(named)) {
            (Some(book), _) => book,
            (None, Ok(named)) => BookId(named),
            (None, Err(_)) => return Err(HandshakeError::Certificate),
        };
        let peer = self.peer(&certificate, Some(book))?;
        Ok((peer, book, Channel::new(self.state)?))
    }

    /// The next handshake message (`size` bytes), carrying `payload`.
    fn write(&mut self, payload: &[u8], size: usize) -> Result<Vec<u8>, HandshakeError> {
        let mut out = vec![0u8; size];
        let n = self.state.write_message(payload, &mut out).map_err(noise)?;
        out.truncate(n);
        Ok(out)
    }

    /// Reads handshake message `number` (`size` bytes): its payload.
    fn read(&mut self, number: u8, bytes: &[u8], size: usize) -> Result<Vec<u8>, HandshakeError> {
        check_size(number, bytes, size)?;
        let mut payload = vec![0u8; size];
        let n = self
            .state
            .read_message(bytes, &mut payload)
            .map_err(|_| HandshakeError::Decrypt(number))?;
        payload.truncate(n);
        Ok(payload)
    }

    /// The peer named by a certificate, for sessions of `book` (or of any book), checked
    /// against the session key the handshake authenticated.
    fn peer(
        &self,
        certificate: &[u8; CERTIFICATE_BYTES],
        book: Option<BookId>,
    ) -> Result<Peer, HandshakeError> {
        let (k, s) = certificate.split_at(32);
        let key = PublicKey(<[u8; 32]>::try_from(k).map_err(|_| HandshakeError::Certificate)?);
        let signature =
            Signature(<[u8; 64]>::try_from(s).map_err(|_| HandshakeError::Certificate)?);
        let session: [u8; 32] = self
            .state
            .get_remote_static()
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or(HandshakeError::Certificate)?;
        match book {
            Some(book) => key.verify_session_key(&book, &session, &signature),
            None => key.verify_session_key_any_book(&session, &signature),
        }
        .map_err(|_| HandshakeError::Certificate)?;
        Ok(Peer {
            device: key.device(),
            key,
        })
    }
}

fn check_size(message: u8, bytes: &[u8], expected: usize) -> Result<(), HandshakeError> {
    if bytes.len() != expected {
        return Err(HandshakeError::Size {
            message,
            got: bytes.len(),
            expected,
        });
    }
    Ok(())
}

/// The two keys of an established session: seals what this side sends, opens what it
/// receives, each direction with its own key and nonce count.
pub struct Channel {
    state: TransportState,
    opened: u64,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel(opened {})", self.opened)
    }
}

impl Channel {
    fn new(state: HandshakeState) -> Result<Self, HandshakeError> {
        Ok(Self {
            state: state.into_transport_mode().map_err(noise)?,
            opened: 0,
        })
    }

    /// Seals one message ([`sealed_len`] bytes).
    pub fn seal(&mut self, message: &[u8]) -> Result<Vec<u8>, TransportError> {
        if message.len() > message::limits::MESSAGE_BYTES_MAX {
            return Err(TransportError::Io(format!(
                "message of {} bytes is too large",
                message.len()
            )));
        }
        let len = u32::try_from(message.len()).map_err(|_| {
            TransportError::Io(format!("message of {} bytes is too large", message.len()))
        })?;
        let mut plain = Vec::with_capacity(message.len() + 4);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(message);
        let mut out = vec![0u8; sealed_len(message.len())];
        let mut at = 0;
        for piece in plain.chunks(PIECE_PLAIN_MAX) {
            let end = at + piece.len() + TAG_BYTES;
            let slot = out.get_mut(at..end).unwrap_or_default();
            let n = self
                .state
                .write_message(piece, slot)
                .map_err(|e| TransportError::Io(format!("sealing a message: {e}")))?;
            at += n;
        }
        out.truncate(at);
        Ok(out)
    }

    /// Opens one sealed message: its bytes, or [`TransportError::Tampered`] when any piece
    /// fails its tag or the length inside does not match.
    pub fn open(&mut self, sealed: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.opened += 1;
        let tampered = TransportError::Tampered(self.opened);
        if sealed.is_empty() || sealed.len() > sealed_len(message::limits::MESSAGE_BYTES_MAX) {
            return Err(tampered);
        }
        let mut plain = vec![0u8; sealed.len()];
        let mut at = 0;
        for piece in sealed.chunks(NOISE_MESSAGE_MAX) {
            let slot = plain.get_mut(at..).unwrap_or_default();
            let n = self
                .state
                .read_message(piece, slot)
                .map_err(|_| tampered.clone())?;
            at += n;
        }
        plain.truncate(at);
        let (head, body) = plain.split_at_checked(4).ok_or(tampered.clone())?;
        let len = u32::from_be_bytes(<[u8; 4]>::try_from(head).map_err(|_| tampered.clone())?);
        if len as usize != body.len() {
            return Err(tampered);
        }
        plain.drain(..4);
        Ok(plain)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn identity(n: u8, book: u8) -> Identity {
        Identity::new(BookId([book; 16]), &DeviceKey::from_seed(&[n; 32]))
    }

    fn handshake(a: &Identity, b: &Identity) -> Result<(Channel, Channel), HandshakeError> {
        let (mut hi, m1) = Handshake::initiate(a)?;
        let (hr, m2) = Handshake::answer(b, &m1)?;
        assert_eq!(hi.read_reply(&m2)?.device, b.device());
        let (m3, ci) = hi.finish(a)?;
        let (peer, book, cr) = hr.read_final(&m3)?;
        assert_eq!(peer.device, a.device());
        assert_eq!(Some(book), a.book());
        Ok((ci, cr))
    }

    /// A relay of many books: device `n`'s identity for no book.
    fn relay(n: u8) -> Identity {
        Identity::any_book(&DeviceKey::from_seed(&[n; 32]))
    }

    #[test]
    fn an_addressed_handshake_names_the_book_to_the_relay_only() {
        for book in [7u8, 8] {
            let a = identity(1, book);
            let r = relay(5);
            let (mut hi, m1) = Handshake::initiate_to(&a, r.device()).unwrap();
            assert_eq!(m1[4], HANDSHAKE_VERSION_ADDRESSED);
            let (hr, m2) = Handshake::answer(&r, &m1).unwrap();
            assert_eq!(hi.read_reply(&m2).unwrap().device, r.device());
            let (m3, mut ci) = hi.finish(&a).unwrap();
            let (peer, named, mut cr) = hr.read_final(&m3).unwrap();
            assert_eq!((peer.device, named), (a.device(), BookId([book; 16])));
            assert_eq!(m1.len() + m2.len() + m3.len(), HANDSHAKE_ADDRESSED_BYTES);
            let sealed = ci.seal(b"summary").unwrap();
            assert_eq!(cr.open(&sealed).unwrap(), b"summary");
        }
        // A replica of one book answers a handshake addressed to it as well.
        let a = identity(1, 7);
        let b = identity(2, 7);
        let (mut hi, m1) = Handshake::initiate_to(&a, b.device()).unwrap();
        let (hr, m2) = Handshake::answer(&b, &m1).unwrap();
        assert_eq!(hi.read_reply(&m2).unwrap().device, b.device());
        let (m3, _) = hi.finish(&a).unwrap();
        assert_eq!(hr.read_final(&m3).unwrap().1, BookId([7; 16]));
    }

    #[test]
    fn an_addressed_handshake_reaches_only_the_device_it_names() {
        let a = identity(1, 7);
        // Addressed to device 5; device 6 cannot read message 1.
        let (_, m1) = Handshake::initiate_to(&a, relay(5).device()).unwrap();
        assert_eq!(
            Handshake::answer(&relay(6), &m1).err(),
            Some(HandshakeError::Decrypt(1))
        );
        // A relay of many books refuses a handshake of one book, naming why.
        let (_, m1) = Handshake::initiate(&a).unwrap();
        assert_eq!(
            Handshake::answer(&relay(5), &m1).err(),
            Some(HandshakeError::NotAddressed)
        );
        // And has no book to start one for.
        assert_eq!(
            Handshake::initiate(&relay(5)).err(),
            Some(HandshakeError::NoBook)
        );
    }

    #[test]
    fn a_book_named_in_message_3_must_be_the_one_the_initiator_certified() {
        // An initiator certified for book 7 naming book 8: the relay refuses the certificate.
        let a = identity(1, 7);
        let mut lying = identity(1, 8);
        lying.certificate = a.certificate;
        let r = relay(5);
        let (mut hi, m1) = Handshake::initiate_to(&lying, r.device()).unwrap();
        let (hr, m2) = Handshake::answer(&r, &m1).unwrap();
        hi.read_reply(&m2).unwrap();
        let (m3, _) = hi.finish(&lying).unwrap();
        assert_eq!(hr.read_final(&m3).err(), Some(HandshakeError::Certificate));
        // A relay's certificate for any book is not one for a book, nor the other way round.
        let mut posing = relay(5);
        posing.any_book = identity(5, 7).certificate;
        let (mut hi, m1) = Handshake::initiate_to(&a, posing.device()).unwrap();
        let (_, m2) = Handshake::answer(&posing, &m1).unwrap();
        assert_eq!(hi.read_reply(&m2), Err(HandshakeError::Certificate));
    }

    #[test]
    fn both_sides_learn_who_the_other_is_and_messages_round_trip() {
        let (mut ci, mut cr) = handshake(&identity(1, 7), &identity(2, 7)).unwrap();
        for len in [
            0,
            1,
            PIECE_PLAIN_MAX - 4,
            PIECE_PLAIN_MAX - 3,
            3 * PIECE_PLAIN_MAX + 5,
        ] {
            let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = ci.seal(&message).unwrap();
            assert_eq!(sealed.len(), sealed_len(len));
            assert_eq!(cr.open(&sealed).unwrap(), message);
            let back = cr.seal(&message).unwrap();
            assert_eq!(ci.open(&back).unwrap(), message);
        }
    }

    #[test]
    fn another_book_fails_the_handshake_before_the_responder_says_anything() {
        let (_, m1) = Handshake::initiate(&identity(1, 7)).unwrap();
        assert_eq!(m1.len(), MESSAGE_1_BYTES);
        assert_eq!(
            Handshake::answer(&identity(2, 8), &m1).err(),
            Some(HandshakeError::Decrypt(1))
        );
    }

    #[test]
    fn message_2_reveals_nothing_to_a_prober_without_the_book_id() {
        // The prober runs message 1 under a book id it guessed; the responder refuses it, so
        // there is no message 2 to read (Noise's prologue alone would not have kept the
        // responder's identity from a prober: only the pre-shared key does).
        let responder = identity(2, 7);
        let (_, m1) = Handshake::initiate(&identity(9, 1)).unwrap();
        assert!(Handshake::answer(&responder, &m1).is_err());
        assert_eq!(HANDSHAKE_BYTES, 53 + 192 + 160);
    }

    #[test]
    fn a_certificate_for_another_session_key_is_refused() {
        // A device that signs a certificate it does not hold the session key of.
        let a = identity(1, 7);
        let mut forged = identity(2, 7);
        forged.certificate = identity(3, 7).certificate;
        let (mut hi, m1) = Handshake::initiate(&a).unwrap();
        let (_, m2) = Handshake::answer(&forged, &m1).unwrap();
        assert_eq!(hi.read_reply(&m2), Err(HandshakeError::Certificate));
    }

    #[test]
    fn flipped_dropped_reordered_and_replayed_messages_are_tampered() {
        let (mut ci, mut cr) = handshake(&identity(1, 7), &identity(2, 7)).unwrap();
        let m: Vec<Vec<u8>> = (0..3u8).map(|i| ci.seal(&[i; 100]).unwrap()).collect();
        let mut flipped = m[0].clone();
        flipped[10] ^= 1;
        assert_eq!(cr.open(&flipped), Err(TransportError::Tampered(1)));
        // A fresh pair for each case: a failed open ends a real session.
        let (mut ci, mut cr) = handshake(&identity(1, 7), &identity(2, 7)).unwrap();
        let m: Vec<Vec<u8>> = (0..3u8).map(|i| ci.seal(&[i; 100]).unwrap()).collect();
        assert_eq!(cr.open(&m[0]).unwrap(), vec![0; 100]);
        assert_eq!(cr.open(&m[2]), Err(TransportError::Tampered(2)), "dropped");
        let (mut ci, mut cr) = handshake(&identity(1, 7), &identity(2, 7)).unwrap();
        let m: Vec<Vec<u8>> = (0..2u8).map(|i| ci.seal(&[i; 10]).unwrap()).collect();
        assert_eq!(cr.open(&m[0]).unwrap(), vec![0; 10]);
        assert_eq!(cr.open(&m[0]), Err(TransportError::Tampered(2)), "replayed");
        let (mut ci, mut cr) = handshake(&identity(1, 7), &identity(2, 7)).unwrap();
        let m: Vec<Vec<u8>> = (0..2u8).map(|i| ci.seal(&[i; 10]).unwrap()).collect();
        assert_eq!(
            cr.open(&m[1]),
            Err(TransportError::Tampered(1)),
            "reordered"
        );
        // A message cut at a piece boundary (its length prefix rewritten by a proxy).
        let (mut ci, mut cr) = handshake(&identity(1, 7), &identity(2, 7)).unwrap();
        let long = ci.seal(&vec![5u8; 2 * PIECE_PLAIN_MAX]).unwrap();
        assert_eq!(
            cr.open(&long[..NOISE_MESSAGE_MAX]),
            Err(TransportError::Tampered(1))
        );
    }

    #[test]
    fn an_unencrypted_peer_and_garbage_are_named() {
        let b = identity(2, 7);
        assert_eq!(
            Handshake::answer(&b, b"CLSY\x01rest").err(),
            Some(HandshakeError::Unencrypted)
        );
        assert_eq!(
            Handshake::answer(&b, b"GET / HTTP/1.1").err(),
            Some(HandshakeError::NotAHandshake)
        );
        let (_, mut m1) = Handshake::initiate(&identity(1, 7)).unwrap();
        m1[4] = 9;
        assert_eq!(
            Handshake::answer(&b, &m1).err(),
            Some(HandshakeError::Version(9, 2))
        );
    }
}
