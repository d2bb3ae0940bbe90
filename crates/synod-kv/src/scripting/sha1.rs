//! SHA-1, for script digests (`EVALSHA`, `SCRIPT LOAD`, `redis.sha1hex`):
//! Redis names scripts by the SHA-1 of their text, so clients compute the
//! same names. Not used for anything that needs collision resistance.
//! Computed by `sha1_smol` (small, dependency-free, widely used).

/// The SHA-1 digest of `data`, as 40 lowercase hex digits.
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::sha1_hex;

    #[test]
    fn known_digests() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1_hex(b"Pizza & Mandolino"),
            "74822d82031af7493c20eefa13bd07ec4fada82f"
        );
        // The digest the suite's EVALSHA tests use.
        assert_eq!(
            sha1_hex(b"return redis.call('get',KEYS[1])"),
            "fd758d1589d044dd850a6f05d52f2eefd27f033f"
        );
        assert_eq!(sha1_hex(&[b'a'; 200]).len(), 40);
    }
}
