//! The op format: golden vectors (docs/FORMAT.md lists the same bytes), strict decoding of
//! every malformed input the brief names, and round-trip properties.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use cardlog_core::codec::{limits, OpFormat};
use cardlog_core::id::to_hex;
use cardlog_core::{
    decode_op, BookId, ContactId, DecodeError, DeviceId, DeviceKey, Field, Hlc, ItemBody, ItemId,
    ItemKind, ItemValue, MemberChange, MemberFault, MemberRole, Op, OpId, OpInvalid, Path,
    PostalAddress, Value, Write,
};

/// Golden op 1: the first op of device 01…01, creating contact 02…02 with a given name.
fn golden_create() -> Op {
    Op {
        author: DeviceId([0x01; 16]),
        seq: 1,
        prev: None,
        hlc: Hlc {
            wall_ms: 1_795_338_000_000,
            counter: 0,
        },
        writes: vec![
            Write {
                contact: ContactId([0x02; 16]),
                path: Path::Exists,
                value: Some(Value::Bool(true)),
                replaces: vec![],
            },
            Write {
                contact: ContactId([0x02; 16]),
                path: Path::Field(Field::Given),
                value: Some(Value::Text("Foo".into())),
                replaces: vec![],
            },
        ],
        members: Vec::new(),
    }
}

/// Golden op 2: the second op of the same device, replacing op 1's writes, adding an address,
/// a tag and a custom field, removing the given name.
fn golden_edit(prev: OpId) -> Op {
    let c = ContactId([0x02; 16]);
    Op {
        author: DeviceId([0x01; 16]),
        seq: 2,
        prev: Some(prev),
        hlc: Hlc {
            wall_ms: 1_795_338_000_000,
            counter: 1,
        },
        writes: vec![
            Write {
                contact: c,
                path: Path::Exists,
                value: Some(Value::Bool(true)),
                replaces: vec![prev],
            },
            Write {
                contact: c,
                path: Path::Field(Field::Given),
                value: None,
                replaces: vec![prev],
            },
            Write {
                contact: c,
                path: Path::Item(ItemKind::Address, ItemId([0x03; 16])),
                value: Some(Value::Item(ItemValue {
                    label: "home".into(),
                    body: ItemBody::Address(Box::new(PostalAddress {
                        street: "1 Main St".into(),
                        locality: "Springfield".into(),
                        country: "US".into(),
                        ..Default::default()
                    })),
                })),
                replaces: vec![],
            },
            Write {
                contact: c,
                path: Path::Tag("friends".into()),
                value: Some(Value::Present),
                replaces: vec![],
            },
            Write {
                contact: c,
                path: Path::Custom("X-SHOE-SIZE".into()),
                value: Some(Value::Text("44".into())),
                replaces: vec![],
            },
        ],
        members: Vec::new(),
    }
}

const GOLDEN_CREATE_HEX: &str = "01010101010101010101010101010101010100fd80d67b02a20100000002020202020202020202020202020202020001010100020202020202020202020202020202020100010003466f6f00";
const GOLDEN_CREATE_ID: &str = "e4e0fdb7405338d24751a3490eca84724319f31a33a09ff8c31f919534645d8f";
const GOLDEN_EDIT_HEX: &str = concat!(
    "01010101010101010101010101010101010201e4e0fdb7405338d24751a3490eca84724319f31a33a09ff8c3",
    "1f919534645d8ffd80d67b02a20100000105020202020202020202020202020202020001010101e4e0fdb740",
    "5338d24751a3490eca84724319f31a33a09ff8c31f919534645d8f0202020202020202020202020202020201",
    "000001e4e0fdb7405338d24751a3490eca84724319f31a33a09ff8c31f919534645d8f020202020202020202",
    "02020202020202020203030303030303030303030303030303010204686f6d650100000931204d61696e2053",
    "740b537072696e676669656c64000002555300020202020202020202020202020202020307667269656e6473",
    "01030002020202020202020202020202020202040b582d53484f452d53495a45010002343400",
);
const GOLDEN_EDIT_ID: &str = "cc5ba243d0e7acd10ce57e5e20972410042904f91d84d6bf14b09ea6c65338bd";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn golden_vectors_are_stable() {
    // Format 1: what every op written before books existed is, byte for byte.
    let create = golden_create().seal_in(OpFormat::V1).unwrap();
    let edit = golden_edit(create.id()).seal_in(OpFormat::V1).unwrap();
    assert_eq!(to_hex(create.bytes()), GOLDEN_CREATE_HEX);
    assert_eq!(create.id().to_string(), GOLDEN_CREATE_ID);
    assert_eq!(to_hex(edit.bytes()), GOLDEN_EDIT_HEX);
    assert_eq!(edit.id().to_string(), GOLDEN_EDIT_ID);
    // And the bytes decode back to the same op and id.
    for (bytes, op) in [(GOLDEN_CREATE_HEX, &create), (GOLDEN_EDIT_HEX, &edit)] {
        let decoded = decode_op(&hex(bytes)).unwrap();
        assert_eq!(&decoded, op);
    }
}

fn golden_bytes() -> Vec<u8> {
    hex(GOLDEN_CREATE_HEX)
}

/// Replaces `len` bytes at `at` with `with`.
fn splice(at: usize, len: usize, with: &[u8]) -> Vec<u8> {
    let mut b = golden_bytes();
    b.splice(at..at + len, with.iter().copied());
    b
}

// Offsets into golden op 1 (docs/FORMAT.md walks through them).
const SEQ_AT: usize = 17;
const WRITES_LEN_AT: usize = 29;
const BOOL_AT: usize = 49;
const PATH_TAG_AT: usize = 67;
const NAME_LEN_AT: usize = 71;

#[test]
fn golden_offsets_are_where_the_tests_think() {
    let b = golden_bytes();
    assert_eq!(
        (
            b[SEQ_AT],
            b[WRITES_LEN_AT],
            b[BOOL_AT],
            b[PATH_TAG_AT],
            b[NAME_LEN_AT]
        ),
        (1, 2, 1, 1, 3)
    );
    assert_eq!(&b[NAME_LEN_AT + 1..NAME_LEN_AT + 4], b"Foo");
}

#[test]
fn rejects_empty_input() {
    assert_eq!(decode_op(&[]), Err(DecodeError::Empty));
}

#[test]
fn rejects_every_truncation() {
    let b = golden_bytes();
    for len in 1..b.len() {
        assert_eq!(
            decode_op(&b[..len]),
            Err(DecodeError::Truncated),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn rejects_trailing_bytes() {
    let mut b = golden_bytes();
    b.extend_from_slice(&[0, 0]);
    assert_eq!(decode_op(&b), Err(DecodeError::TrailingBytes { count: 2 }));
}

#[test]
fn rejects_non_minimal_varint() {
    // seq = 1 written as a 0xfb-prefixed u16 decodes to the same op but is not canonical; the
    // id of these bytes would differ from the op's id, so they are refused.
    let b = splice(SEQ_AT, 1, &[0xfb, 0x01, 0x00]);
    assert_eq!(
        decode_op(&b),
        Err(DecodeError::NonCanonical { offset: SEQ_AT })
    );
}

/// Every byte of both golden ops re-written in each longer varint form (as if it were a
/// one-byte varint): none is accepted, and each that parses as a varint is refused as
/// non-canonical at that byte. This covers the
/// longer forms; that no *equal-length* other form exists (what decode_op's length check
/// relies on) follows from the op's types (docs/FORMAT.md) and is what the `decode_op` fuzz
/// check (`fuzz/src/checks.rs`: re-sealing an accepted op gives its input bytes) probes.
#[test]
fn no_longer_form_of_any_byte_is_accepted() {
    // Per byte of the create op, how many of its three longer forms were refused as such.
    let mut refused_in_create = std::collections::BTreeMap::<usize, u8>::new();
    let mut refused_as_non_canonical = 0;
    let create = golden_create();
    let edit = golden_edit(create.clone().seal().unwrap().id());
    let create_v2 = golden_create().seal().unwrap();
    let edit_v2 = golden_edit(create_v2.id()).seal().unwrap();
    let v1 = [create, edit].map(|op| op.seal_in(OpFormat::V1).unwrap());
    let ops = [v1[0].clone(), v1[1].clone(), create_v2, edit_v2]
        .into_iter()
        .chain(golden_membership().into_iter().map(|(op, _)| op));
    for (n, sealed) in ops.enumerate() {
        let bytes = sealed.bytes().to_vec();
        for at in 0..bytes.len() {
            let v = bytes[at];
            let forms: [Vec<u8>; 3] = [
                [&[0xfb][..], &u16::from(v).to_le_bytes()].concat(),
                [&[0xfc][..], &u32::from(v).to_le_bytes()].concat(),
                [&[0xfd][..], &u64::from(v).to_le_bytes()].concat(),
            ];
            for form in forms {
                let mutated = [&bytes[..at], &form[..], &bytes[at + 1..]].concat();
                match decode_op(&mutated) {
                    Ok(_) => panic!("accepted a longer form of byte {at}"),
                    Err(DecodeError::NonCanonical { offset }) => {
                        refused_as_non_canonical += 1;
                        assert_eq!(offset, at, "non-canonical form named at the wrong byte");
                        if n == 0 {
                            *refused_in_create.entry(at).or_default() += 1;
                        }
                    }
                    // Not a varint there (an id byte, a fixed-size field, text): the longer
                    // form breaks the layout instead.
                    Err(_) => {}
                }
            }
        }
    }
    // The one-byte varints of the create op the other tests locate were each found, in every
    // longer form, and refused as non-canonical at their own byte.
    for at in [SEQ_AT, WRITES_LEN_AT, NAME_LEN_AT] {
        assert_eq!(
            refused_in_create.get(&at),
            Some(&3),
            "byte {at}: {refused_in_create:?}"
        );
    }
    assert!(refused_as_non_canonical >= 30, "{refused_as_non_canonical}");
}

#[test]
fn rejects_unknown_version() {
    for version in [0, 3, 0xff] {
        let b = splice(0, 1, &[version]);
        assert_eq!(
            decode_op(&b),
            Err(DecodeError::UnknownVersion {
                found: version,
                supported: 2
            })
        );
    }
}

// ---- format 2 ------------------------------------------------------------------------------

/// Golden op 1 in format 2: version byte 2, the same fields, then an empty list of member
/// changes.
const GOLDEN_CREATE_V2_HEX: &str = concat!(
    "02010101010101010101010101010101010100fd80d67b02a20100000002020202020202020202020202020202",
    "020001010100020202020202020202020202020202020100010003466f6f0000",
);
const GOLDEN_CREATE_V2_ID: &str =
    "0ec0fe1f5a10df673bc9069b42f7985107f5f1a7b4246cd91b2c6b90909022b2";

/// The founder of the golden book: the key with seed 11…11.
fn founder() -> DeviceKey {
    DeviceKey::from_seed(&[0x11; 32])
}

/// The device the founder admits: the key with seed 22…22.
fn ada_ipad() -> DeviceKey {
    DeviceKey::from_seed(&[0x22; 32])
}

const GOLDEN_NONCE: [u8; 16] = [0x33; 16];

/// The golden book's first two ops, each with its founder's tip signature: the founding op,
/// then an op admitting Ada's iPad as a writer.
fn golden_membership() -> [(cardlog_core::SealedOp, cardlog_core::Signature); 2] {
    let key = founder();
    let book = BookId::founded_by(&key.public(), &GOLDEN_NONCE);
    let found = Op {
        author: key.device(),
        seq: 1,
        prev: None,
        hlc: Hlc {
            wall_ms: 1_796_288_400_000, // 2026-12-03T09:00:00Z
            counter: 0,
        },
        writes: vec![],
        members: vec![MemberChange::Found {
            nonce: GOLDEN_NONCE,
            key: key.public(),
            name: "Ada's iPhone".into(),
        }],
    }
    .seal()
    .unwrap();
    let add = Op {
        author: key.device(),
        seq: 2,
        prev: Some(found.id()),
        hlc: Hlc {
            wall_ms: 1_796_288_400_000,
            counter: 1,
        },
        writes: vec![],
        members: vec![MemberChange::Add {
            device: ada_ipad().device(),
            role: MemberRole::Write,
            name: "Ada's iPad".into(),
        }],
    }
    .seal()
    .unwrap();
    let sign = |op: &cardlog_core::SealedOp| key.sign_tip(&book, &op.id());
    let (s1, s2) = (sign(&found), sign(&add));
    [(found, s1), (add, s2)]
}

const GOLDEN_BOOK: &str = "fc30f1c0a13808cb1c87f7d3703e4d77";
const GOLDEN_FOUND_HEX: &str = concat!(
    "0289691110874c78aff97fadedf033bdbf0100fd80ca213ba20100000000010033333333333333333333333333",
    "333333d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370c4164612773206950",
    "686f6e65",
);
const GOLDEN_ADD_HEX: &str = concat!(
    "0289691110874c78aff97fadedf033bdbf0201c82ae6c6e341beaa8e2b926a81128c791675f6c346f8d8dcf960",
    "ef98cb5e135dfd80ca213ba201000001000101c5357b0e009c0b83ee57aec670955912010a4164612773206950",
    "6164",
);
const GOLDEN_ADD_SIGNATURE: &str = concat!(
    "57065107a0b7a1b8cec681d4fe4ec13508e703e98a08dc7b9dd09d1dc5477bb35b960d3dcefa590f02b7ac16b6",
    "8a75c77472535f93bd9666b1d10ffbfdd7c400",
);

#[test]
fn golden_vectors_of_format_2_are_stable() {
    let create = golden_create().seal().unwrap();
    let [(found, _), (add, sig)] = golden_membership();
    let book = BookId::founded_by(&founder().public(), &GOLDEN_NONCE);
    assert_eq!(to_hex(create.bytes()), GOLDEN_CREATE_V2_HEX);
    assert_eq!(create.id().to_string(), GOLDEN_CREATE_V2_ID);
    // The same content in format 1 is the same bytes after the version byte, without the
    // trailing empty list of member changes: a different op with a different id.
    let v1 = golden_create().seal_in(OpFormat::V1).unwrap();
    assert_eq!(
        &create.bytes()[1..create.bytes().len() - 1],
        &v1.bytes()[1..]
    );
    assert_ne!(create.id(), v1.id());
    assert_eq!(book.to_string(), GOLDEN_BOOK);
    assert_eq!(to_hex(found.bytes()), GOLDEN_FOUND_HEX);
    assert_eq!(to_hex(add.bytes()), GOLDEN_ADD_HEX);
    assert_eq!(to_hex(&sig.0), GOLDEN_ADD_SIGNATURE);
    for (op, signature) in golden_membership() {
        assert_eq!(decode_op(op.bytes()).unwrap(), op);
        founder()
            .public()
            .verify_tip(&book, &op.id(), &signature)
            .unwrap();
    }
    // The founder's device id is its key's.
    assert_eq!(found.op().author, founder().public().device());
}

#[test]
fn member_changes_are_checked_when_sealed_and_decoded() {
    let [(found, _), (add, _)] = golden_membership();
    let invalid = |change: &dyn Fn(&mut Op)| {
        let mut op = add.op().clone();
        change(&mut op);
        op.seal().unwrap_err()
    };
    use cardlog_core::EncodeError::Invalid;
    // A founding change anywhere but alone in seq 1, or naming another key.
    assert_eq!(
        invalid(&|op| op.members = found.op().members.clone()),
        Invalid(OpInvalid::Member {
            index: 0,
            fault: MemberFault::FoundOutOfPlace
        })
    );
    let mut other = found.op().clone();
    other.members = vec![MemberChange::Found {
        nonce: GOLDEN_NONCE,
        key: ada_ipad().public(),
        name: "x".into(),
    }];
    assert_eq!(
        other.seal().unwrap_err(),
        Invalid(OpInvalid::Member {
            index: 0,
            fault: MemberFault::FoundKeyNotAuthor
        })
    );
    // A founder's weak key, an empty or overlong name, adopting seq 0.
    let weak = {
        let mut k = [0u8; 32];
        k[0] = 1;
        cardlog_core::PublicKey(k)
    };
    let mut weak_found = found.op().clone();
    weak_found.members = vec![MemberChange::Found {
        nonce: GOLDEN_NONCE,
        key: weak,
        name: "x".into(),
    }];
    assert_eq!(
        weak_found.seal().unwrap_err(),
        Invalid(OpInvalid::Member {
            index: 0,
            fault: MemberFault::BadKey
        })
    );
    for name in [String::new(), "x".repeat(limits::NAME_BYTES_MAX + 1)] {
        let bytes = name.len();
        assert_eq!(
            invalid(&|op| op.members = vec![MemberChange::Add {
                device: ada_ipad().device(),
                role: MemberRole::Read,
                name: name.clone()
            }]),
            Invalid(OpInvalid::Member {
                index: 0,
                fault: MemberFault::NameLength {
                    bytes,
                    max: limits::NAME_BYTES_MAX
                }
            })
        );
    }
    assert_eq!(
        invalid(&|op| op.members = vec![MemberChange::Adopt {
            author: DeviceId([1; 16]),
            seq: 0,
            tip: OpId([0; 32])
        }]),
        Invalid(OpInvalid::Member {
            index: 0,
            fault: MemberFault::AdoptSeqZero
        })
    );
    // Saves and member changes do not mix; too many changes; none cannot be written in format 1.
    assert_eq!(
        invalid(&|op| op.writes = golden_create().writes),
        Invalid(OpInvalid::Mixed)
    );
    assert_eq!(
        invalid(&|op| op.members = vec![
            MemberChange::Remove {
                device: DeviceId([1; 16]),
                after: 0
            };
            limits::MEMBER_CHANGES_PER_OP_MAX + 1
        ]),
        Invalid(OpInvalid::TooManyMemberChanges {
            count: limits::MEMBER_CHANGES_PER_OP_MAX + 1,
            max: limits::MEMBER_CHANGES_PER_OP_MAX
        })
    );
    assert_eq!(
        add.op().clone().seal_in(OpFormat::V1).unwrap_err(),
        Invalid(OpInvalid::MembersInFormat1)
    );
    // A membership op's bytes with the version byte set to 1 do not decode as a format-1 op.
    let mut as_v1 = add.bytes().to_vec();
    as_v1[0] = 1;
    assert!(decode_op(&as_v1).is_err());
}

#[test]
fn rejects_oversize_lengths() {
    let huge: [u8; 9] = [0xfd, 0, 0, 0, 0, 0, 1, 0, 0]; // 2^40 as a u64 varint
    for at in [WRITES_LEN_AT, NAME_LEN_AT] {
        let b = splice(at, 1, &huge);
        assert_eq!(
            decode_op(&b),
            Err(DecodeError::LengthTooLarge {
                max: limits::DECODED_BYTES_MAX
            }),
            "length at {at}"
        );
    }
    let b = vec![1u8; limits::OP_BYTES_MAX + 1];
    assert_eq!(
        decode_op(&b),
        Err(DecodeError::TooLarge {
            len: b.len(),
            max: limits::OP_BYTES_MAX
        })
    );
}

#[test]
fn rejects_malformed_layout() {
    let bad_tag = splice(PATH_TAG_AT, 1, &[9]);
    let bad_utf8 = splice(NAME_LEN_AT + 1, 1, &[0xff]);
    let bad_bool = splice(BOOL_AT, 1, &[2]);
    for b in [bad_tag, bad_utf8, bad_bool] {
        assert!(
            matches!(decode_op(&b), Err(DecodeError::Malformed(_))),
            "{:?}",
            decode_op(&b)
        );
    }
}

#[test]
fn rejects_canonical_bytes_of_an_invalid_op() {
    let mut op = golden_create();
    op.writes.reverse();
    let bytes = cardlog_core::encode_op(&op).unwrap();
    assert!(matches!(
        decode_op(&bytes),
        Err(DecodeError::Invalid(
            cardlog_core::OpInvalid::WritesUnsorted { index: 1, .. }
        ))
    ));
    let mut op = golden_create();
    op.writes.remove(0);
    let bytes = cardlog_core::encode_op(&op).unwrap();
    assert!(matches!(
        decode_op(&bytes),
        Err(DecodeError::Invalid(
            cardlog_core::OpInvalid::MissingExists { .. }
        ))
    ));
}

#[test]
fn every_rejection_reads_differently() {
    let mut trailing = golden_bytes();
    trailing.push(0);
    let inputs = [
        vec![],
        golden_bytes()[..10].to_vec(),
        trailing,
        splice(SEQ_AT, 1, &[0xfb, 0x01, 0x00]),
        splice(0, 1, &[7]),
        splice(NAME_LEN_AT, 1, &[0xfd, 0, 0, 0, 0, 0, 1, 0, 0]),
        splice(PATH_TAG_AT, 1, &[9]),
    ];
    let messages: Vec<String> = inputs
        .iter()
        .map(|b| decode_op(b).unwrap_err().to_string())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = messages.iter().collect();
    assert_eq!(distinct.len(), messages.len(), "{messages:#?}");
    assert!(messages[4].contains("version 7"));
}

// ---- limits: each one exact (the limit itself is accepted) and named with the value found --

/// A first op of device 01…01 on contact 02…02: its `exists` write, then `more`.
fn op_with(more: Vec<Write>) -> Op {
    let mut op = golden_create();
    op.writes.truncate(1);
    op.writes.extend(more);
    op
}

fn tag_write(name: String) -> Write {
    Write {
        contact: ContactId([0x02; 16]),
        path: Path::Tag(name),
        value: Some(Value::Present),
        replaces: vec![],
    }
}

/// Decoding the op's canonical bytes, and sealing it locally, both refuse it with `invalid`.
fn assert_invalid(op: &Op, invalid: OpInvalid, words: &[&str]) {
    let bytes = cardlog_core::encode_op(op).unwrap();
    let err = decode_op(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::Invalid(invalid.clone()));
    let text = err.to_string();
    for w in words {
        assert!(text.contains(w), "{w:?} not in {text:?}");
    }
    assert_eq!(
        op.clone().seal().unwrap_err(),
        cardlog_core::EncodeError::Invalid(invalid)
    );
}

fn assert_accepted(op: &Op) {
    let bytes = cardlog_core::encode_op(op).unwrap();
    assert!(bytes.len() <= limits::OP_BYTES_MAX);
    assert_eq!(decode_op(&bytes).unwrap().op(), op);
}

#[test]
fn writes_per_op_max_is_exact_and_named() {
    let max = limits::WRITES_PER_OP_MAX;
    let tags = |n: usize| op_with((1..n).map(|i| tag_write(format!("t{i:05}"))).collect());
    assert_accepted(&tags(max));
    let over = tags(max + 1);
    assert_eq!(over.writes.len(), 4097);
    assert_invalid(
        &over,
        OpInvalid::TooManyWrites {
            count: max + 1,
            max,
        },
        &["4097 writes", "4096"],
    );
}

#[test]
fn replaces_per_write_max_is_exact_and_named() {
    let max = limits::REPLACES_PER_WRITE_MAX;
    let replacing = |n: usize| {
        let mut op = golden_edit(OpId([0xee; 32]));
        op.writes[1].replaces = (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                OpId(id)
            })
            .collect();
        op
    };
    assert_accepted(&replacing(max));
    assert_invalid(
        &replacing(max + 1),
        OpInvalid::TooManyReplaces {
            index: 1,
            count: max + 1,
            max,
        },
        &["write 1", "replaces 257 writes", "256"],
    );
    // Order is its own fault, named differently.
    let mut unsorted = replacing(2);
    unsorted.writes[1].replaces.reverse();
    assert_invalid(
        &unsorted,
        OpInvalid::ReplacesUnsorted { index: 1 },
        &["sorted and unique"],
    );
}

#[test]
fn text_bytes_max_is_exact_and_named_for_every_kind_of_text() {
    let max = limits::TEXT_BYTES_MAX;
    let c = ContactId([0x02; 16]);
    fn item(label: String, body: ItemBody) -> Option<Value> {
        Some(Value::Item(ItemValue { label, body }))
    }
    // Where the long text goes: a path and the value holding the text.
    type Holder = fn(String) -> Option<Value>;
    let cases: [(Path, Holder); 5] = [
        (Path::Field(Field::Note), |t| Some(Value::Text(t))),
        (Path::Custom("X-BIG".into()), |t| Some(Value::Text(t))),
        (Path::Item(ItemKind::Phone, ItemId([0x04; 16])), |t| {
            item(t, ItemBody::Text("1".into()))
        }),
        (Path::Item(ItemKind::Email, ItemId([0x04; 16])), |t| {
            item("home".into(), ItemBody::Text(t))
        }),
        (Path::Item(ItemKind::Address, ItemId([0x04; 16])), |t| {
            item(
                "home".into(),
                ItemBody::Address(Box::new(PostalAddress {
                    locality: t,
                    ..Default::default()
                })),
            )
        }),
    ];
    for (path, value) in &cases {
        let op = |n: usize| {
            op_with(vec![Write {
                contact: c,
                path: path.clone(),
                value: value("é".repeat(n / 2) + &"x".repeat(n % 2)),
                replaces: vec![],
            }])
        };
        assert_accepted(&op(max));
        assert_invalid(
            &op(max + 1),
            OpInvalid::TextTooLong {
                index: 1,
                bytes: max + 1,
                max,
            },
            &["262145 bytes", "262144"],
        );
    }
}

#[test]
fn name_bytes_max_is_exact_and_named_for_tags_and_custom_fields() {
    let max = limits::NAME_BYTES_MAX;
    let c = ContactId([0x02; 16]);
    for custom in [false, true] {
        let op = |n: usize| {
            let name = "n".repeat(n);
            op_with(vec![if custom {
                Write {
                    contact: c,
                    path: Path::Custom(name),
                    value: Some(Value::Text("v".into())),
                    replaces: vec![],
                }
            } else {
                tag_write(name)
            }])
        };
        assert_accepted(&op(max));
        assert_invalid(
            &op(max + 1),
            OpInvalid::BadName {
                index: 1,
                bytes: max + 1,
                max,
            },
            &["257", "256"],
        );
    }
}

#[test]
fn op_bytes_max_is_exact_and_named_when_encoding() {
    let max = limits::OP_BYTES_MAX;
    // Texts at their own limit, enough of them to pass the op's.
    let big = |fields: &[Field], last: usize| {
        op_with(
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| Write {
                    contact: ContactId([0x02; 16]),
                    path: Path::Field(*f),
                    value: Some(Value::Text("x".repeat(if i + 1 == fields.len() {
                        last
                    } else {
                        limits::TEXT_BYTES_MAX
                    }))),
                    replaces: vec![],
                })
                .collect(),
        )
    };
    let fields = [Field::Given, Field::Family, Field::Org, Field::Note];
    // Three texts at their limit and a fourth just short of it reach the op's limit. The size
    // grows by one per byte of the last text (its length takes 5 bytes throughout).
    let base = cardlog_core::encode_op(&big(&fields, 0x10000))
        .unwrap()
        .len();
    let fits = max - base + 0x10000;
    let at_limit = cardlog_core::encode_op(&big(&fields, fits)).unwrap();
    assert_eq!(at_limit.len(), max);
    assert!(decode_op(&at_limit).is_ok());
    let err = cardlog_core::encode_op(&big(&fields, fits + 1)).unwrap_err();
    assert_eq!(
        err,
        cardlog_core::EncodeError::TooLarge { len: max + 1, max }
    );
    assert!(err.to_string().contains("1048577 bytes"), "{err}");
    assert!(err.to_string().contains("1048576-byte"), "{err}");
    // The same bytes arriving are refused before decoding (rejects_oversize_lengths).
}

#[test]
fn outlines_of_long_values_many_writes_and_member_changes() {
    // Lengths and counts of 251 and more take a wider varint; an op changing members has no
    // outline (its reader decodes it in full).
    let long = "x".repeat(70_000);
    let mut writes: Vec<Write> = (0..300u16)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&i.to_be_bytes());
            Write {
                contact: ContactId(id),
                path: Path::Exists,
                value: Some(Value::Bool(true)),
                replaces: vec![OpId([3; 32]); if i == 0 { 260 } else { 1 }],
            }
        })
        .collect();
    writes.push(Write {
        contact: ContactId([0xff; 16]),
        path: Path::Custom(long.clone()),
        value: Some(Value::Text(long)),
        replaces: vec![],
    });
    let op = Op {
        author: DeviceId([1; 16]),
        seq: u64::MAX,
        prev: Some(OpId([2; 32])),
        hlc: Hlc {
            wall_ms: u64::MAX,
            counter: u32::MAX,
        },
        writes,
        members: vec![],
    };
    let mut contacts = Vec::new();
    for format in [OpFormat::V1, OpFormat::V2] {
        let bytes = cardlog_core::encode_op_in(&op, format).unwrap();
        let outline = cardlog_core::outline(&bytes, &mut contacts).unwrap();
        assert_eq!((outline.author, outline.seq), (op.author, op.seq));
        let want: Vec<ContactId> = op.writes.iter().map(|w| w.contact).collect();
        assert_eq!(contacts, want);
    }
    let members = Op {
        writes: vec![],
        members: vec![cardlog_core::MemberChange::Remove {
            device: DeviceId([4; 16]),
            after: 7,
        }],
        ..op
    };
    let bytes = cardlog_core::encode_op_in(&members, OpFormat::V2).unwrap();
    assert!(cardlog_core::decode_op_unchecked(&bytes).is_some());
    assert!(cardlog_core::outline(&bytes, &mut contacts).is_none());
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn path() -> impl Strategy<Value = (Path, Option<Value>)> {
        let text = "[a-z0-9 ]{0,12}";
        prop_oneof![
            (0..12usize, text)
                .prop_map(|(f, t)| (Path::Field(Field::ALL[f]), Some(Value::Text(t)))),
            (0..3usize, any::<[u8; 16]>(), text, text).prop_map(|(k, id, l, t)| {
                let kind = [ItemKind::Phone, ItemKind::Email, ItemKind::Url][k];
                (
                    Path::Item(kind, ItemId(id)),
                    Some(Value::Item(ItemValue {
                        label: l,
                        body: ItemBody::Text(t),
                    })),
                )
            }),
            (any::<[u8; 16]>(), text).prop_map(|(id, street)| (
                Path::Item(ItemKind::Address, ItemId(id)),
                Some(Value::Item(ItemValue {
                    label: String::new(),
                    body: ItemBody::Address(Box::new(PostalAddress {
                        street,
                        ..Default::default()
                    })),
                })),
            )),
            "[a-z]{1,8}".prop_map(|t| (Path::Tag(t), Some(Value::Present))),
            ("X-[A-Z]{1,8}", text).prop_map(|(n, t)| (Path::Custom(n), Some(Value::Text(t)))),
            (0..12usize).prop_map(|f| (Path::Field(Field::ALL[f]), None)),
        ]
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        (
            any::<[u8; 16]>(),
            1..1_000_000u64,
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(
                (
                    0..3u8,
                    path(),
                    proptest::collection::btree_set(any::<[u8; 32]>(), 0..3),
                    any::<bool>(),
                ),
                0..8,
            ),
        )
            .prop_map(|(author, seq, prev, wall_ms, counter, raw)| {
                let mut writes: BTreeMap<(ContactId, Path), Write> = BTreeMap::new();
                for (c, (path, value), replaces, exists) in raw {
                    let contact = ContactId([c; 16]);
                    writes.entry((contact, Path::Exists)).or_insert(Write {
                        contact,
                        path: Path::Exists,
                        value: Some(Value::Bool(exists)),
                        replaces: vec![],
                    });
                    let replaces = replaces.into_iter().map(OpId).collect();
                    writes.insert(
                        (contact, path.clone()),
                        Write {
                            contact,
                            path,
                            value,
                            replaces,
                        },
                    );
                }
                if writes.is_empty() {
                    let contact = ContactId([9; 16]);
                    writes.insert(
                        (contact, Path::Exists),
                        Write {
                            contact,
                            path: Path::Exists,
                            value: Some(Value::Bool(true)),
                            replaces: vec![],
                        },
                    );
                }
                Op {
                    author: DeviceId(author),
                    seq,
                    prev: (seq > 1).then_some(OpId(prev)),
                    hlc: Hlc { wall_ms, counter },
                    writes: writes.into_values().collect(),
                    members: Vec::new(),
                }
            })
    }

    proptest! {
        #[test]
        fn valid_ops_round_trip_to_the_same_bytes_and_id(op in op()) {
            let sealed = op.clone().seal().unwrap();
            let decoded = decode_op(sealed.bytes()).unwrap();
            prop_assert_eq!(decoded.op(), &op);
            prop_assert_eq!(decoded.id(), sealed.id());
            prop_assert_eq!(decoded.bytes(), sealed.bytes());
        }

        #[test]
        fn mutated_bytes_never_panic_and_never_alias(
            op in op(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            let sealed = op.seal().unwrap();
            let mut bytes = sealed.bytes().to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len().max(1));
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i.min(bytes.len()), byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            // Whatever decodes is exactly canonical: its id is the hash of the input.
            if let Ok(decoded) = decode_op(&bytes) {
                prop_assert_eq!(decoded.bytes(), &bytes[..]);
                prop_assert_eq!(decoded.id(), OpId::of_bytes(&bytes));
            }
            // Damaged bytes have an outline exactly when they decode (an op of contacts), and
            // it is the decoded op's.
            let mut contacts = Vec::new();
            let outline = cardlog_core::outline(&bytes, &mut contacts);
            let decoded = cardlog_core::decode_op_unchecked(&bytes);
            prop_assert_eq!(outline.is_some(), decoded.is_some());
            if let (Some(outline), Some(op)) = (outline, decoded) {
                prop_assert_eq!((outline.author, outline.seq), (op.author, op.seq));
                let want: Vec<ContactId> = op.writes.iter().map(|w| w.contact).collect();
                prop_assert_eq!(contacts, want);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_op(&bytes);
            let _ = cardlog_core::outline(&bytes, &mut Vec::new());
        }

        #[test]
        fn an_outline_is_the_decoded_ops_author_seq_and_contacts(op in op()) {
            // In both op formats: what the log index keeps of an op, read without decoding.
            let mut contacts = vec![ContactId([7; 16])];
            for format in [OpFormat::V1, OpFormat::V2] {
                let bytes = cardlog_core::encode_op_in(&op, format).unwrap();
                let outline = cardlog_core::outline(&bytes, &mut contacts).unwrap();
                prop_assert_eq!(outline.author, op.author);
                prop_assert_eq!(outline.seq, op.seq);
                let want: Vec<ContactId> = op.writes.iter().map(|w| w.contact).collect();
                prop_assert_eq!(&contacts, &want);
                // Cut anywhere inside its writes, the bytes have no outline.
                let members_start = bytes.len() - usize::from(format == OpFormat::V2);
                for cut in 0..members_start {
                    prop_assert!(cardlog_core::outline(&bytes[..cut], &mut contacts).is_none());
                }
            }
        }
    }
}
