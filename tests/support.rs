//! The harness lives in the testkit crate (`hubguard_testkit::support`); the areas use it as
//! `crate::support`.

pub use hubguard_testkit::support::*;
