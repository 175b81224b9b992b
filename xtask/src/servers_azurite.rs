//! The Azure Blob test server (Azurite), started by `Servers::start`. Filled in by the azblob
//! backend work.

use crate::servers::Servers;
use crate::Result;

/// Start Azurite and export `BKCACHE_TEST_AZURITE*` variables (nothing yet).
pub fn start(_s: &mut Servers) -> Result {
    Ok(())
}
