//! RTSP/1.0 (RFC 2326) requests and responses, and the SDP (RFC 4566) a camera returns
//! to DESCRIBE.

use std::net::Ipv4Addr;

/// A request line plus `CSeq`, extra headers and an empty line.
pub fn request(method: &str, url: &str, cseq: u32, headers: &[(&str, String)]) -> Vec<u8> {
    let mut s = format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("User-Agent: nvrd/4.2 (LIVE555 Streaming Media v2020.08.19)\r\n\r\n");
    s.into_bytes()
}

/// `RTSP/1.0 200 OK` with `CSeq`, headers and an optional body (Content-Length added).
pub fn response(cseq: u32, headers: &[(&str, String)], body: &str) -> Vec<u8> {
    let mut s = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

/// The camera's session description (H.264, payload type 96, ~600 bytes).
pub fn sdp(camera: Ipv4Addr, session_id: u64, url: &str) -> String {
    format!(
        "v=0\r\n\
o=- {session_id} 1 IN IP4 {camera}\r\n\
s=Media Presentation\r\n\
e=NONE\r\n\
b=AS:5100\r\n\
t=0 0\r\n\
a=control:{url}\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 0.0.0.0\r\n\
b=AS:5000\r\n\
a=recvonly\r\n\
a=framerate:25.000000\r\n\
a=range:npt=now-\r\n\
a=x-dimensions:1920,1080\r\n\
a=control:{url}/trackID=1\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=420029; packetization-mode=1\r\n\
a=Media_header:MEDIAINFO=494D4B48010300000400000100000000000000000000000000000000000000000000000000000000;\r\n\
a=appversion:1.0\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_format() {
        let r = request(
            "OPTIONS",
            "rtsp://192.168.10.21:554/Streaming/Channels/101",
            1,
            &[],
        );
        let s = String::from_utf8(r).unwrap_or_default();
        assert!(s.starts_with(
            "OPTIONS rtsp://192.168.10.21:554/Streaming/Channels/101 RTSP/1.0\r\nCSeq: 1\r\n"
        ));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn response_content_length_matches() {
        let body = sdp(Ipv4Addr::new(192, 168, 10, 21), 1, "rtsp://x");
        let r = String::from_utf8(response(
            2,
            &[("Content-Type", "application/sdp".into())],
            &body,
        ))
        .unwrap_or_default();
        assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(r.ends_with(&body));
        assert!((450..800).contains(&body.len()), "{}", body.len());
    }
}
