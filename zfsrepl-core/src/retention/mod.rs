//! Pure retention planning. This first part is the retention grid grammar
//! ([`RetentionGrid`]); the planner follows.

pub mod grid;

pub use grid::{GridError, GridInterval, GridKeep, IntervalProblem, RetentionGrid};
