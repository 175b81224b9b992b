//! The GitHub Actions cache test server, started by `Servers::start`. Filled in by the gha
//! backend work.

use crate::servers::Servers;
use crate::Result;

/// Start the GHA cache test server and export `BKCACHE_TEST_GHA*` variables (nothing yet).
pub fn start(_s: &mut Servers) -> Result {
    Ok(())
}
