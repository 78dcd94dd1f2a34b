//! Fixtures shared by several test files (each includes this with `mod common;`). They live
//! here rather than in the harness library because they use dev-dependencies.

pub mod k8s;
