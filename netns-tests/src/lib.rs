//! Integration harness. (in progress)
