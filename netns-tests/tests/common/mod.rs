//! Fixtures shared by several test files (each includes this with `mod common;`). They live
//! here rather than in the harness library because they use dev-dependencies.

pub mod k8s;
// Each test file uses a different part of the portmap fixture.
#[allow(dead_code)]
pub mod hostport;
