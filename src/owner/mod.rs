//! What the home owner decides: values lifted from enforcement (`allow`),
//! "why is this blocked?" (`explain`), and new indicators that only observe
//! for a while before they block (`shadow`).

pub mod allow;
pub mod explain;
pub mod shadow;
