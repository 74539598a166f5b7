//! Unit tests of replay mechanics; the semantic rules are tested in tests/semantics.rs.
