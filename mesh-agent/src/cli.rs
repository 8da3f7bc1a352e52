//! The `mesh` command line (being written).

/// Runs the command line; returns the exit code.
pub fn main(_args: Vec<std::ffi::OsString>) -> i32 {
    1
}
