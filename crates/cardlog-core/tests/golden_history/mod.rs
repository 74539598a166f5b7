//! The golden history, shared by the golden-fixture tests of the store
//! (`cardlog-store/tests/golden.rs`) and of the wire (`cardlog-sync/tests/golden.rs`), which
//! include this file: six literal ops of two authors with fixed ids and timestamps (a create
//! with fields and phone, e-mail, address, tag and custom writes; a second contact; an edit; two
//! concurrent edits of one field, a conflict; a delete), the summary of any of them, and the
//! reading and writing of committed fixture files (docs/FORMAT.md, "Golden fixtures"). It lives
//! beside core's own golden vectors because it is a history of ops; it is no test of its own.
#![allow(dead_code)]

use std::path::PathBuf;

use cardlog_core::codec::OpFormat;
use cardlog_core::replay::ChainTip;
use cardlog_core::{
    ContactId, DeviceId, Field, Hlc, ItemBody, ItemId, ItemKind, ItemValue, Op, OpId, Path,
    PostalAddress, SealedOp, Summary, Value, Write,
};

pub const A: DeviceId = DeviceId([0xa1; 16]);
pub const B: DeviceId = DeviceId([0xb2; 16]);
pub const ADA: ContactId = ContactId([0x0c; 16]);
pub const CHARLES: ContactId = ContactId([0x0d; 16]);
pub const PHONE: ItemId = ItemId([0x11; 16]);
pub const EMAIL: ItemId = ItemId([0x12; 16]);
pub const HOME: ItemId = ItemId([0x13; 16]);
pub const URL: ItemId = ItemId([0x14; 16]);
/// 2026-11-22T09:00:00Z.
pub const NINE_MS: u64 = 1_795_338_000_000;

/// The ids of the history's ops in op format 1, in application order (A1, B1, A2, B2, B3, A3).
pub const OP_IDS: [&str; 6] = [
    "2402867b2ddc0eaa229a2c3af9232061516cb97ad37550ac31e1e14cbca65d55",
    "347cd291e5a1159d4353fe3fcfbf2fbffc5f0da863462d0bd86cbc7174a58916",
    "14d81fefd126193478505b501d77ac9241f7b27c5296e7f47d9e75267a1166f8",
    "e8b12315185e69754eb38cfc50470a5dac3ba2def913e4f292bf64be506d11ef",
    "1b46655076c9a52aa033238ece632797c0593499b8810831113a0e10ba830697",
    "4b1d1d0909d4a3ca1d2887fc40dc270b99e254c189bd441ba9783b356dd05078",
];

pub fn at(after_ms: u64, counter: u32) -> Hlc {
    Hlc {
        wall_ms: NINE_MS + after_ms,
        counter,
    }
}

pub fn write(contact: ContactId, path: Path, value: Option<Value>, replaces: &[OpId]) -> Write {
    Write {
        contact,
        path,
        value,
        replaces: replaces.to_vec(),
    }
}

pub fn text(s: &str) -> Option<Value> {
    Some(Value::Text(s.into()))
}

pub fn item(label: &str, body: &str) -> Option<Value> {
    Some(Value::Item(ItemValue {
        label: label.into(),
        body: ItemBody::Text(body.into()),
    }))
}

pub const EXISTS: Option<Value> = Some(Value::Bool(true));

/// The six ops, in application order: A1 creates Ada (every kind of write); B1 creates Charles;
/// A2 edits Ada's phone, adds a URL and removes her tag; B2 (having A1, not A2) sets her
/// organisation; A3 (not having B2) sets it too, so the organisation has two heads; B3 deletes
/// Charles in the same millisecond as B2 (HLC counter 1).
/// The history in op format 1 (what the fixtures of store format 3 and segment version 1 hold).
pub fn history() -> Vec<SealedOp> {
    history_in(OpFormat::V1)
}

/// The history with its ops in `format`.
pub fn history_in(format: OpFormat) -> Vec<SealedOp> {
    let a1 = Op {
        author: A,
        seq: 1,
        prev: None,
        hlc: at(0, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[]),
            write(ADA, Path::Field(Field::Given), text("Ada"), &[]),
            write(ADA, Path::Field(Field::Family), text("Lovelace"), &[]),
            write(
                ADA,
                Path::Field(Field::Org),
                text("Analytical Engines"),
                &[],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Phone, PHONE),
                item("mobile", "+44 20 7946 0001"),
                &[],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Email, EMAIL),
                item("work", "ada@example.org"),
                &[],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Address, HOME),
                Some(Value::Item(ItemValue {
                    label: "home".into(),
                    body: ItemBody::Address(Box::new(PostalAddress {
                        street: "12 St James's Square".into(),
                        locality: "London".into(),
                        code: "SW1Y 4JH".into(),
                        country: "UK".into(),
                        ..Default::default()
                    })),
                })),
                &[],
            ),
            write(ADA, Path::Tag("friends".into()), Some(Value::Present), &[]),
            write(ADA, Path::Custom("X-SHOE-SIZE".into()), text("38"), &[]),
        ],
        members: Vec::new(),
    }
    .seal_in(format)
    .unwrap();
    let b1 = Op {
        author: B,
        seq: 1,
        prev: None,
        hlc: at(1_000, 0),
        writes: vec![
            write(CHARLES, Path::Exists, EXISTS, &[]),
            write(CHARLES, Path::Field(Field::Given), text("Charles"), &[]),
            write(CHARLES, Path::Field(Field::Family), text("Babbage"), &[]),
        ],
        members: Vec::new(),
    }
    .seal_in(format)
    .unwrap();
    let a2 = Op {
        author: A,
        seq: 2,
        prev: Some(a1.id()),
        hlc: at(60_000, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[a1.id()]),
            write(
                ADA,
                Path::Item(ItemKind::Phone, PHONE),
                item("mobile", "+44 20 7946 0002"),
                &[a1.id()],
            ),
            write(
                ADA,
                Path::Item(ItemKind::Url, URL),
                item("", "https://example.org/ada"),
                &[],
            ),
            write(ADA, Path::Tag("friends".into()), None, &[a1.id()]),
        ],
        members: Vec::new(),
    }
    .seal_in(format)
    .unwrap();
    let b2 = Op {
        author: B,
        seq: 2,
        prev: Some(b1.id()),
        hlc: at(90_000, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[a1.id()]),
            write(
                ADA,
                Path::Field(Field::Org),
                text("Babbage & Co"),
                &[a1.id()],
            ),
        ],
        members: Vec::new(),
    }
    .seal_in(format)
    .unwrap();
    let b3 = Op {
        author: B,
        seq: 3,
        prev: Some(b2.id()),
        hlc: at(90_000, 1),
        writes: vec![write(
            CHARLES,
            Path::Exists,
            Some(Value::Bool(false)),
            &[b1.id()],
        )],
        members: Vec::new(),
    }
    .seal_in(format)
    .unwrap();
    let a3 = Op {
        author: A,
        seq: 3,
        prev: Some(a2.id()),
        hlc: at(120_000, 0),
        writes: vec![
            write(ADA, Path::Exists, EXISTS, &[a2.id()]),
            write(
                ADA,
                Path::Field(Field::Org),
                text("Engines Ltd"),
                &[a1.id()],
            ),
        ],
        members: Vec::new(),
    }
    .seal_in(format)
    .unwrap();
    vec![a1, b1, a2, b2, b3, a3]
}

/// Per author, the last op among `ops`.
pub fn summary_of(ops: &[SealedOp]) -> Summary {
    let mut summary = Summary::new();
    for op in ops {
        summary.insert(
            op.op().author,
            ChainTip {
                seq: op.op().seq,
                op: op.id(),
                hlc: op.op().hlc,
            },
        );
    }
    summary
}

// ---- fixture files -------------------------------------------------------------------------

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name)
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "golden fixture {}: {e} (docs/FORMAT.md, \"Golden fixtures\")",
            path.display()
        )
    })
}

/// With `CARDLOG_WRITE_GOLDEN=1`, writes `bytes` as fixture `name` unless it exists: fixtures
/// are never overwritten (a new format version gets new files).
pub fn write_fixture_if_asked(name: &str, bytes: &[u8]) {
    if std::env::var("CARDLOG_WRITE_GOLDEN").as_deref() != Ok("1") {
        return;
    }
    let path = fixture_path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => std::io::Write::write_all(&mut file, bytes).unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Asserts `made` is byte for byte the fixture `name`, naming the first differing offset.
pub fn assert_same_bytes(name: &str, made: &[u8], golden: &[u8]) {
    let first_diff = made.iter().zip(golden).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none() && made.len() == golden.len(),
        "{name}: today's build writes {} bytes, the fixture holds {}; first difference at byte \
         {first_diff:?}",
        made.len(),
        golden.len()
    );
}

/// The ids of the history's ops in op format 2, in application order.
pub const OP_IDS_V2: [&str; 6] = [
    "ad7b30d924cffb55b3b248246ee5e0cf47eb5edb227d214119a16d05819175f5",
    "13f5b80d422571c55c38b56c68697cb781bf983e429e82e3ce111f2fa0fc9ed0",
    "49bd9e4d395f2d4ac52ff013e28247df7a87e12fc6ae6b6adbe6644c4939a21e",
    "ec2f95cc7b2be95942aa7d0bf20acecd8645b65108c58b5f5b8da23c9628a62e",
    "531263c9240f19a4916119794292a917b718df746678b33e0500647560959ee3",
    "66a851c431537ecb9f92acdd04c342eecec42141a4545069e598f5a9e79ab13b",
];
