//! The S3 test server (moto), started by `Servers::start`. Filled in by the S3 backend work.

use crate::servers::Servers;
use crate::Result;

/// Start moto and export `BKCACHE_TEST_S3*` variables (nothing yet).
pub fn start(_s: &mut Servers) -> Result {
    Ok(())
}
