//! The syslog transports: RFC 5424 messages (`<PRI>1 TIMESTAMP HOSTNAME flowsentry PROCID
//! MSGID - <event JSON>`), over TCP with RFC 6587 octet counting (`<length> <message>`),
//! or over UDP, one message per datagram. HOSTNAME is the sensor id; MSGID the event type;
//! severity is warning for anomalies and incidents, error for `error` events, info
//! otherwise.
//!
//! Plain syslog has no application acknowledgement: over TCP an event counts as delivered
//! when the kernel accepted the write. Because bytes accepted just before the receiver
//! went away can still be lost, the last `resend_window` events written on a connection
//! are written again after it breaks (counted as `retried`); receivers see duplicates,
//! which `seq` identifies. Over UDP nothing can be confirmed: sent datagrams are counted
//! as `sent_unconfirmed`, never as delivered. Owns framing and connection handling.

use super::queued::Transport;
use super::{EventKind, Record};
use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connect and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn severity(kind: EventKind) -> u8 {
    match kind {
        EventKind::Anomaly | EventKind::Incident => 4,
        EventKind::Error => 3,
        _ => 6,
    }
}

/// The RFC 3339 time now, as RFC 5424 wants it (UTC, microseconds, `Z`).
fn now_rfc3339() -> String {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let s = crate::time::Timestamp::from_micros(us).to_eve_string();
    match s.strip_suffix("+0000") {
        Some(b) => format!("{b}Z"),
        None => s,
    }
}

/// Builds RFC 5424 messages.
struct Formatter {
    facility: u8,
    host: String,
    pid: u32,
}

impl Formatter {
    fn new(facility: u8, sensor_id: &str) -> Formatter {
        let host: String = sensor_id
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .take(255)
            .collect();
        Formatter {
            facility,
            host: if host.is_empty() { "-".into() } else { host },
            pid: std::process::id(),
        }
    }

    /// Appends one message (without framing) to `out`.
    fn message(&self, rec: &Record, ts: &str, out: &mut Vec<u8>) {
        let pri = u16::from(self.facility) * 8 + u16::from(severity(rec.kind));
        let _ = write!(
            out,
            "<{pri}>1 {ts} {} flowsentry {} {} - ",
            self.host,
            self.pid,
            rec.kind.as_str()
        );
        out.extend_from_slice(&rec.line);
    }
}

/// syslog over TCP with octet counting, as a [`Transport`].
pub struct SyslogTcp {
    addr: String,
    fmt: Formatter,
    stream: Option<TcpStream>,
    /// Events written on the current connection, newest last (at most `window`).
    recent: VecDeque<Arc<Record>>,
    window: usize,
    /// The connection broke: write `recent` again first after reconnecting.
    resend: bool,
    resent: u64,
    buf: Vec<u8>,
}

impl SyslogTcp {
    /// A transport to `addr` (`host:port`); no connection is made yet.
    pub fn new(addr: &str, facility: u8, sensor_id: &str, window: usize) -> SyslogTcp {
        SyslogTcp {
            addr: addr.to_string(),
            fmt: Formatter::new(facility, sensor_id),
            stream: None,
            recent: VecDeque::new(),
            window,
            resend: false,
            resent: 0,
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Frames `recs` into `self.buf`; returns the end offset of each message.
    fn frame(&mut self, recs: &[Arc<Record>]) -> Vec<usize> {
        self.buf.clear();
        let ts = now_rfc3339();
        let mut ends = Vec::with_capacity(recs.len());
        let mut msg = Vec::with_capacity(2048);
        for r in recs {
            msg.clear();
            self.fmt.message(r, &ts, &mut msg);
            let _ = write!(self.buf, "{} ", msg.len());
            self.buf.extend_from_slice(&msg);
            ends.push(self.buf.len());
        }
        ends
    }

    /// Writes `self.buf`; returns how many bytes the kernel accepted before an error.
    fn write_buf(&mut self) -> Result<(), (usize, std::io::Error)> {
        let Some(s) = self.stream.as_mut() else {
            return Err((0, std::io::Error::from(std::io::ErrorKind::NotConnected)));
        };
        let mut off = 0;
        while off < self.buf.len() {
            match s.write(&self.buf[off..]) {
                Ok(0) => return Err((off, std::io::Error::from(std::io::ErrorKind::WriteZero))),
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err((off, e)),
            }
        }
        Ok(())
    }

    /// Whether the receiver closed the connection (it never sends us anything, so a
    /// readable socket means end of stream or an error).
    fn peer_closed(&self) -> bool {
        let Some(s) = self.stream.as_ref() else {
            return true;
        };
        if s.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let closed = match s.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        closed || s.set_nonblocking(false).is_err()
    }

    fn broken(&mut self, e: String) -> String {
        self.stream = None;
        self.resend = true;
        e
    }

    fn remember(&mut self, recs: &[Arc<Record>]) {
        if self.window == 0 {
            return;
        }
        for r in recs {
            if self.recent.len() == self.window {
                self.recent.pop_front();
            }
            self.recent.push_back(r.clone());
        }
    }
}

impl Transport for SyslogTcp {
    fn kind(&self) -> &'static str {
        "syslog+tcp"
    }

    fn connect(&mut self) -> Result<(), String> {
        let addrs: Vec<_> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.addr))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let s = stream.ok_or_else(|| {
            format!(
                "cannot connect to {}: {}",
                self.addr,
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".into())
            )
        })?;
        s.set_write_timeout(Some(IO_TIMEOUT))
            .and_then(|()| s.set_nodelay(true))
            .map_err(|e| format!("cannot set socket options: {e}"))?;
        self.stream = Some(s);
        if self.resend && !self.recent.is_empty() {
            // Arrival of the last events before the break is uncertain: write them again.
            // They stay in the window: now written on this connection, they are as
            // uncertain as anything written next (a second break sends them once more).
            let recs: Vec<Arc<Record>> = self.recent.iter().cloned().collect();
            self.frame(&recs);
            if let Err((_, e)) = self.write_buf() {
                return Err(self.broken(format!("write to {} failed: {e}", self.addr)));
            }
            self.resent += recs.len() as u64;
        } else {
            self.recent.clear();
        }
        self.resend = false;
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    fn take_resent(&mut self) -> u64 {
        std::mem::take(&mut self.resent)
    }

    fn take_uncertain(&mut self) -> Vec<Arc<Record>> {
        // A receiver that went away after our last write leaves those bytes unconfirmed
        // even though no write failed yet.
        if self.stream.is_some() && self.peer_closed() {
            self.stream = None;
            self.resend = true;
        }
        if !std::mem::take(&mut self.resend) {
            return Vec::new();
        }
        self.recent.drain(..).collect()
    }

    fn send(
        &mut self,
        batch: &[Arc<Record>],
        acked: &mut [bool],
        _deadline: Instant,
    ) -> Result<(), String> {
        if self.peer_closed() {
            return Err(self.broken(format!("{} closed the connection", self.addr)));
        }
        let ends = self.frame(batch);
        match self.write_buf() {
            Ok(()) => {
                acked.iter_mut().for_each(|a| *a = true);
                self.remember(batch);
                Ok(())
            }
            Err((off, e)) => {
                let done = ends.iter().take_while(|&&end| end <= off).count();
                for a in acked.iter_mut().take(done) {
                    *a = true;
                }
                self.remember(&batch[..done]);
                Err(self.broken(format!("write to {} failed: {e}", self.addr)))
            }
        }
    }
}

/// syslog over UDP, one message per datagram, as a [`Transport`].
pub struct SyslogUdp {
    addr: String,
    fmt: Formatter,
    sock: Option<UdpSocket>,
    buf: Vec<u8>,
}

impl SyslogUdp {
    /// A transport to `addr` (`host:port`).
    pub fn new(addr: &str, facility: u8, sensor_id: &str) -> SyslogUdp {
        SyslogUdp {
            addr: addr.to_string(),
            fmt: Formatter::new(facility, sensor_id),
            sock: None,
            buf: Vec::with_capacity(4096),
        }
    }
}

impl Transport for SyslogUdp {
    fn kind(&self) -> &'static str {
        "syslog+udp"
    }

    fn confirms(&self) -> bool {
        false
    }

    fn connect(&mut self) -> Result<(), String> {
        let target = self
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.addr))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.addr))?;
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(local)
            .and_then(|s| s.connect(target).map(|()| s))
            .and_then(|s| s.set_write_timeout(Some(IO_TIMEOUT)).map(|()| s))
            .map_err(|e| format!("cannot open a UDP socket to {}: {e}", self.addr))?;
        self.sock = Some(s);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.sock.is_some()
    }

    fn send(
        &mut self,
        batch: &[Arc<Record>],
        acked: &mut [bool],
        _deadline: Instant,
    ) -> Result<(), String> {
        let ts = now_rfc3339();
        for (i, r) in batch.iter().enumerate() {
            self.buf.clear();
            self.fmt.message(r, &ts, &mut self.buf);
            let Some(s) = self.sock.as_ref() else {
                return Err("not connected".into());
            };
            if let Err(e) = s.send(&self.buf) {
                // e.g. ECONNREFUSED after an ICMP port unreachable: nobody listens.
                self.sock = None;
                return Err(format!("send to {} failed: {e}", self.addr));
            }
            if let Some(a) = acked.get_mut(i) {
                *a = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_rfc5424_with_octet_counting() {
        let mut t = SyslogTcp::new("127.0.0.1:1", 16, "site-a", 10);
        let rec = Arc::new(Record {
            seq: 3,
            kind: EventKind::Anomaly,
            key: "k".into(),
            line: br#"{"event_type":"anomaly","seq":3}"#.to_vec().into(),
        });
        let ends = t.frame(&[rec.clone(), rec]);
        let text = String::from_utf8(t.buf.clone()).expect("utf-8");
        let (len, rest) = text.split_once(' ').expect("length prefix");
        let len: usize = len.parse().expect("number");
        let first = &rest[..len];
        assert!(first.starts_with("<132>1 "), "{first}");
        assert!(first.contains(" site-a flowsentry "), "{first}");
        assert!(
            first.ends_with(r#" anomaly - {"event_type":"anomaly","seq":3}"#),
            "{first}"
        );
        assert_eq!(ends.len(), 2);
        assert_eq!(ends[1], t.buf.len());
        let ts = first.split(' ').nth(1).expect("timestamp");
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    }

    fn rec(seq: u64) -> Arc<Record> {
        Arc::new(Record {
            seq,
            kind: EventKind::Flow,
            key: "k".into(),
            line: format!(r#"{{"event_type":"flow","seq":{seq}}}"#)
                .into_bytes()
                .into(),
        })
    }

    /// Accepts one connection and closes it at once without reading (what a receiver
    /// that dies with bytes in its socket buffer looks like to the sender: closing with
    /// unread data makes the kernel reset the connection).
    fn accept_and_reset(l: &std::net::TcpListener) {
        let (c, _) = l.accept().expect("accept");
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Events resent after a break are written on the new connection, so a second break
    /// sends them again (an audit lost seq 1-4420 to two breaks in a row, all counted as
    /// delivered).
    #[test]
    fn events_resent_after_a_break_are_resent_after_a_second_break() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let mut t = SyslogTcp::new(&addr, 16, "s", 100);
        let deadline = Instant::now() + Duration::from_secs(5);
        let batch = [rec(1), rec(2)];
        let mut acked = [false; 2];
        t.connect().expect("connect 1");
        t.send(&batch, &mut acked, deadline).expect("send");
        assert_eq!(acked, [true, true]);
        accept_and_reset(&l);
        let mut acked = [false; 1];
        assert!(t.send(&[rec(3)], &mut acked, deadline).is_err(), "break 1");
        t.connect().expect("connect 2: resends 1, 2");
        accept_and_reset(&l);
        assert!(t.send(&[rec(3)], &mut acked, deadline).is_err(), "break 2");
        t.connect().expect("connect 3: resends 1, 2 again");
        let (mut c, _) = l.accept().expect("accept 3");
        drop(t);
        let mut got = String::new();
        use std::io::Read;
        c.read_to_string(&mut got).expect("read");
        for seq in [1, 2] {
            assert!(
                got.contains(&format!(r#""seq":{seq}}}"#)),
                "seq {seq} not resent after the second break: {got:?}"
            );
        }
    }

    /// A run that ends while the connection is broken keeps the resend window for the
    /// next run: those events were counted as delivered, but their arrival is uncertain
    /// (they were neither resent nor kept before).
    #[test]
    fn the_window_of_a_connection_broken_at_the_end_is_handed_back() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let mut t = SyslogTcp::new(&addr, 16, "s", 100);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut acked = [false; 2];
        t.connect().expect("connect");
        t.send(&[rec(1), rec(2)], &mut acked, deadline)
            .expect("send");
        // Healthy connection: nothing uncertain.
        let (c, _) = l.accept().expect("accept");
        assert!(t.take_uncertain().is_empty());
        // The receiver goes away; no write has failed yet.
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        let back: Vec<u64> = t.take_uncertain().iter().map(|r| r.seq).collect();
        assert_eq!(back, [1, 2]);
        assert!(t.take_uncertain().is_empty(), "handed back once");
    }
}
