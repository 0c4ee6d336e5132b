//! End-to-end suites live in tests/tests; this crate has no library code.
