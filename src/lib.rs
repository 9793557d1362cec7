//! The workspace root package: it carries the end-to-end tests in `tests/` and
//! the criterion benchmarks in `benches/`. It has no code of its own; see
//! `zfsrepl-core`, `zfsrepl-daemon` and `zfsrepl-cli`.
