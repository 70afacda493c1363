//! Telnet (RFC 854) bytes of a BusyBox telnetd login and of Mirai's brute forcer
//! (`scanner.c`): option negotiation, prompts, credentials and the `MIRAI` check.

/// IAC.
pub const IAC: u8 = 255;

/// BusyBox telnetd's opening negotiation: DO ECHO, DO NAWS, WILL ECHO, WILL SGA.
pub fn server_negotiation() -> Vec<u8> {
    vec![
        IAC, 0xfd, 0x01, IAC, 0xfd, 0x1f, IAC, 0xfb, 0x01, IAC, 0xfb, 0x03,
    ]
}

/// Mirai's answer (`consume_iacs`): WONT to every DO except NAWS, which it accepts with
/// an 80x24 window, and DO to every WILL.
pub fn mirai_negotiation_reply() -> Vec<u8> {
    vec![
        IAC, 0xfc, 0x01, IAC, 0xfb, 0x1f, IAC, 0xfa, 0x1f, 0x00, 0x50, 0x00, 0x18, IAC, 0xf0, IAC,
        0xfd, 0x01, IAC, 0xfd, 0x03,
    ]
}

/// Mirai's weighted credential table (`scanner.c` `add_auth_entry` calls): (user, pass,
/// weight).
pub const MIRAI_CREDENTIALS: [(&str, &str, u32); 62] = [
    ("root", "xc3511", 10),
    ("root", "vizxv", 9),
    ("root", "admin", 8),
    ("admin", "admin", 7),
    ("root", "888888", 6),
    ("root", "xmhdipc", 5),
    ("root", "default", 5),
    ("root", "juantech", 5),
    ("root", "123456", 5),
    ("root", "54321", 5),
    ("support", "support", 5),
    ("root", "", 4),
    ("admin", "password", 4),
    ("root", "root", 4),
    ("root", "12345", 4),
    ("user", "user", 3),
    ("admin", "", 3),
    ("root", "pass", 3),
    ("admin", "admin1234", 3),
    ("root", "1111", 3),
    ("admin", "smcadmin", 3),
    ("admin", "1111", 2),
    ("root", "666666", 2),
    ("root", "password", 2),
    ("root", "1234", 2),
    ("root", "klv123", 1),
    ("Administrator", "admin", 1),
    ("service", "service", 1),
    ("supervisor", "supervisor", 1),
    ("guest", "guest", 1),
    ("guest", "12345", 1),
    ("guest", "12345", 1),
    ("admin1", "password", 1),
    ("administrator", "1234", 1),
    ("666666", "666666", 1),
    ("888888", "888888", 1),
    ("ubnt", "ubnt", 1),
    ("root", "klv1234", 1),
    ("root", "Zte521", 1),
    ("root", "hi3518", 1),
    ("root", "jvbzd", 1),
    ("root", "anko", 1),
    ("root", "zlxx.", 1),
    ("root", "7ujMko0vizxv", 1),
    ("root", "7ujMko0admin", 1),
    ("root", "system", 1),
    ("root", "ikwb", 1),
    ("root", "dreambox", 1),
    ("root", "user", 1),
    ("root", "realtek", 1),
    ("root", "00000000", 1),
    ("admin", "1111111", 1),
    ("admin", "1234", 1),
    ("admin", "12345", 1),
    ("admin", "54321", 1),
    ("admin", "123456", 1),
    ("admin", "7ujMko0admin", 1),
    ("admin", "1234", 1),
    ("admin", "pass", 1),
    ("admin", "meinsm", 1),
    ("tech", "tech", 1),
    ("mother", "fucker", 1),
];

/// Commands Mirai sends after a successful login, in order.
pub const MIRAI_POST_LOGIN: [&str; 5] = ["enable", "system", "shell", "sh", "/bin/busybox MIRAI"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_is_well_formed() {
        let s = server_negotiation();
        assert_eq!(s.len(), 12);
        assert!(s.chunks(3).all(|c| c[0] == IAC));
        let r = mirai_negotiation_reply();
        assert_eq!(&r[6..9], &[IAC, 0xfa, 0x1f]);
        assert_eq!(&r[13..15], &[IAC, 0xf0]);
    }

    #[test]
    fn credential_weights() {
        assert_eq!(MIRAI_CREDENTIALS[0], ("root", "xc3511", 10));
        assert!(MIRAI_CREDENTIALS.iter().all(|c| c.2 >= 1));
    }
}
