//! HTTP/1.1 messages for the camera's web server and the HTTP flood.

/// The five User-Agent strings of Mirai's `http` attack (`table.c`, TABLE_HTTP_ONE..FIVE).
pub const MIRAI_USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6) AppleWebKit/601.7.7 (KHTML, like Gecko) Version/9.1.2 Safari/601.7.7",
];

/// A keep-alive `GET` request as Mirai's http flood sends it.
pub fn get(host: &str, path: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nUser-Agent: {user_agent}\r\nHost: {host}\r\nConnection: keep-alive\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.8\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    .into_bytes()
}

/// `HTTP/1.1 200 OK` with an HTML body of exactly `body_len` bytes.
pub fn ok_html(body_len: usize) -> Vec<u8> {
    let mut body = String::from("<!DOCTYPE html><html><head><title>Login</title></head><body>");
    while body.len() + 14 < body_len {
        body.push_str("<div>IPC</div>");
    }
    while body.len() + 14 > body_len && body.len() > 20 {
        body.pop();
    }
    while body.len() < body_len.saturating_sub(14) {
        body.push(' ');
    }
    body.push_str("</body></html>");
    let mut s = format!(
        "HTTP/1.1 200 OK\r\nServer: Boa/0.94.14rc21\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    );
    s.push_str(&body);
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_content_length_matches_body() {
        for n in [60, 300, 1000] {
            let r = String::from_utf8(ok_html(n)).unwrap_or_default();
            let (head, body) = r.split_once("\r\n\r\n").unwrap_or(("", ""));
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
        }
    }

    #[test]
    fn get_ends_with_blank_line() {
        let g = get("192.168.10.21", "/", MIRAI_USER_AGENTS[0]);
        assert!(g.starts_with(b"GET / HTTP/1.1\r\n"));
        assert!(g.ends_with(b"\r\n\r\n"));
    }
}
