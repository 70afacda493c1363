//! Exfiltration: the compromised device opens TLS to a never-seen public host and
//! uploads `bytes` over the episode in MSS-sized segments, paced to a constant rate; the
//! receiver ACKs every second segment and sends a few tiny records, so 10–100× more
//! bytes go out than come in.

use super::EpisodeSpec;
use crate::sim::devices::common::{self};
use crate::sim::engine::{Out, Stream};
use crate::sim::net::Link;
use crate::sim::proto::tls;
use crate::sim::rng::SimRng;
use crate::sim::site::MS;
use crate::sim::tcp::{TcpConn, CLIENT, SERVER};

const TICK: u64 = 100 * MS;

/// The upload.
#[derive(Debug)]
pub struct Exfil {
    rng: SimRng,
    conn: TcpConn,
    per_tick: usize,
    left: u64,
    next: u64,
    started: bool,
    done: bool,
    server_until: u64,
}

impl Exfil {
    /// Upload of `ep.bytes` over `ep.duration` from `link.a` to `link.b`:`port`.
    pub fn new(mut rng: SimRng, link: Link, port: u16, ep: &EpisodeSpec) -> Self {
        let bytes = if ep.bytes > 0 { ep.bytes } else { 50_000_000 };
        let ticks = (ep.duration / TICK).max(1);
        let per_tick = (bytes / ticks).max(1) as usize;
        let cport = rng.range(32768, 61000) as u16;
        let conn = {
            let lat = common::inet_lat(&mut rng, (60, 140));
            common::new_conn(&mut rng, link, cport, port, lat)
        };
        Exfil {
            rng,
            conn,
            per_tick,
            left: bytes,
            next: ep.start,
            started: false,
            done: false,
            server_until: 0,
        }
    }
}

impl Stream for Exfil {
    fn next_time(&self) -> Option<u64> {
        (!self.done).then_some(self.next)
    }
    fn fire(&mut self, out: &mut Out) {
        let now = out.now;
        let rng = &mut self.rng;
        if !self.started {
            self.started = true;
            out.mark("exfil_open");
            let t = common::tls_open(
                out,
                rng,
                &mut self.conn,
                now,
                "cdn-sync.example-storage.net",
                3500,
            );
            self.next = t + 5 * MS;
            return;
        }
        out.mark("exfil_tick");
        let n = (self.per_tick as u64).min(self.left) as usize;
        let data = tls::app_data(rng, n.max(22));
        let segs = data.len().div_ceil(self.conn.mss).max(1) as u64;
        let gap = (TICK * 9 / 10) / segs;
        self.conn.send_paced(out, CLIENT, now, &data, gap.max(20));
        self.left = self.left.saturating_sub(data.len() as u64);
        if rng.chance(0.02) {
            let t = self.conn.react(SERVER) + rng.range(MS, 5 * MS);
            let n = rng.range(30, 60) as usize;
            let ack = tls::app_data(rng, n);
            let ts = self.conn.send(out, SERVER, t, &ack);
            // the client's next segments must not acknowledge this record early
            self.server_until = ts;
        }
        if self.left == 0 {
            self.conn.settle(out);
            let t = self.conn.last_time() + rng.range(10 * MS, 100 * MS);
            self.conn.close(out, CLIENT, t);
            self.done = true;
        } else {
            self.next = (now + TICK).max(self.server_until + 1);
        }
    }
}
