//! Placeholder: this bench is being written.
fn main() {}
