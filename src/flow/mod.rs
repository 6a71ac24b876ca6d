//! Voice flows: the YAML model (`model`, `load`), checks authors run before
//! a caller ever hears the flow (`validate`), the interpreter (`engine`,
//! `steps`, `vars`, `expr`; the backends steps call live in `crate::backends`)
//! and the offline test runner with its scripted caller (`testing`).

pub mod diag;
pub mod engine;
pub mod expr;
pub mod load;
pub mod model;
pub mod state;
pub mod steps;
pub mod testing;
pub mod validate;
pub mod vars;
