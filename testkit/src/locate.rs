//! Finding the external programs the testkit runs (`redis-server`, `faketime`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::TestkitError;

/// Environment variable that overrides where `redis-server` is found.
pub const REDIS_SERVER_ENV: &str = "QUORATE_REDIS_SERVER";

/// Environment variable that overrides where `faketime` is found.
pub const FAKETIME_ENV: &str = "QUORATE_FAKETIME";

/// The `redis-server` binary to run: `$QUORATE_REDIS_SERVER` if set, else the
/// first `redis-server` on `PATH`.
pub fn redis_server_path() -> Result<PathBuf, TestkitError> {
    redis_server_path_from(
        std::env::var_os(REDIS_SERVER_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// Whether [`redis_server_path`] finds a binary; lets tests skip cleanly.
pub fn redis_server_available() -> bool {
    redis_server_path().is_ok()
}

/// [`redis_server_path`] with the environment passed in, so the lookup can be
/// tested without mutating process-wide state that parallel tests share.
///
/// A set but unusable override is an error rather than a fallback to `PATH`:
/// someone who set it expects that exact binary to be used.
pub fn redis_server_path_from(
    override_path: Option<&OsStr>,
    search_path: Option<&OsStr>,
) -> Result<PathBuf, TestkitError> {
    locate("redis-server", override_path, search_path).ok_or(TestkitError::RedisServerNotFound)
}

/// The `faketime` binary to run: `$QUORATE_FAKETIME` if set, else the first
/// `faketime` on `PATH`.
pub fn faketime_path() -> Result<PathBuf, TestkitError> {
    faketime_path_from(
        std::env::var_os(FAKETIME_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// Whether [`faketime_path`] finds a binary; lets clock tests skip cleanly.
pub fn faketime_available() -> bool {
    faketime_path().is_ok()
}

/// [`faketime_path`] with the environment passed in (see [`redis_server_path_from`]).
pub fn faketime_path_from(
    override_path: Option<&OsStr>,
    search_path: Option<&OsStr>,
) -> Result<PathBuf, TestkitError> {
    locate("faketime", override_path, search_path).ok_or(TestkitError::FaketimeNotFound)
}

fn locate(
    name: &str,
    override_path: Option<&OsStr>,
    search_path: Option<&OsStr>,
) -> Option<PathBuf> {
    // An empty variable is treated as unset, as shells make that easy to do by accident.
    if let Some(path) = override_path.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return is_executable(&path).then_some(path);
    }
    let search_path: OsString = search_path?.to_owned();
    std::env::split_paths(&search_path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
