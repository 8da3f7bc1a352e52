//! Placeholder: this example is being written.
fn main() {}
