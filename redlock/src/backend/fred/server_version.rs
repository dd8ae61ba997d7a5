//! The oldest Redis a node may run, and reading a node's version.
//!
//! Redis 6.2: the tree lock's script samples holders with `HRANDFIELD`
//! (6.2), and the documented ACL needs ACL users (6.0). Redis 7.0 adds
//! functions, which quorate uses where it can (`EVALSHA` otherwise).

/// The oldest version quorate runs on: 6.2.0.
pub(crate) const MINIMUM_REDIS: (u32, u32, u32) = (6, 2, 0);

/// The `redis_version` field of an `INFO server` answer.
pub(crate) fn from_info(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
}

/// Whether `version` (`major.minor.patch`) is older than [`MINIMUM_REDIS`];
/// `None` when it is not a version number.
pub(crate) fn is_too_old(version: &str) -> Option<bool> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch) < MINIMUM_REDIS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_6_2_are_too_old() {
        for (version, old) in [
            ("7.0.15", false),
            ("6.2.0", false),
            ("6.2.14", false),
            ("7.2.4", false),
            ("10.0.0", false),
            ("6.0.9", true),
            ("5.0.14", true),
            ("6.1.255", true),
        ] {
            assert_eq!(is_too_old(version), Some(old), "{version}");
        }
        assert_eq!(is_too_old("unstable"), None);
    }

    #[test]
    fn the_version_is_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(from_info(info), Some("7.0.15"));
        assert_eq!(from_info("# Server\r\n"), None);
    }
}
