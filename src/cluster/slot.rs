//! The hash slot of a key: CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection)
//! of the key, or of its hash tag, modulo 16384, as the Redis Cluster specification defines it.
//!
//! redis-rs's `cluster_routing::Slot::for_key` computes the same, but in redis 1.x a `Slot`
//! does not give its number back, and the routing of a whole command is private to redis-rs;
//! so the number is computed here, and checked against the server's `CLUSTER KEYSLOT` in the
//! tests.

/// Redis Cluster's hash slots: 0 to 16383.
pub(crate) const SLOTS: u16 = 16384;

/// CRC16-XMODEM of every byte value, built at compile time.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// What of `key` is hashed: the part between the first `{` and the first `}` after it, when
/// that part is not empty; the whole key otherwise.
fn hashed(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// The hash slot of `key`.
pub(crate) fn of(key: &[u8]) -> u16 {
    crc16(hashed(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, and the specification's example.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_what_redis_answers() {
        // From `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(of(b"foo"), 12182);
        assert_eq!(of(b"bar"), 5061);
        assert_eq!(of(b""), 0);
        assert_eq!(of(b"{user1000}.following"), of(b"user1000"));
        assert_eq!(of(b"{user1000}.followers"), of(b"{user1000}.following"));
    }

    #[test]
    fn hash_tags_follow_the_specification() {
        // An empty tag hashes the whole key; only the first `{` and the first `}` after it
        // count.
        assert_eq!(hashed(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashed(b"foo{bar"), b"foo{bar");
        assert_eq!(hashed(b"}{x}"), b"x");
    }
}
