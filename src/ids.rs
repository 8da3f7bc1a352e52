//! Random identifiers: accessor and secret IDs, policy and role IDs.

use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, ErrorKind};

/// A random version-4 UUID from the system's secure random source. Secret IDs are made with
/// it, so there is no weaker fallback: without an entropy source the call fails.
pub(crate) fn uuid() -> Result<String, Error> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ErrorKind::Config("the system has no secure random source".into()))?;
    Ok(mesh_core::ClusterId::from_random_bytes(b)
        .as_str()
        .to_owned())
}
