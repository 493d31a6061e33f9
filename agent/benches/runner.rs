//! Placeholder until the runner benchmark lands.
fn main() {}
