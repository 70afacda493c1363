//! The Redis Streams transport: each batch is one pipeline of
//! `XADD <stream> MAXLEN ~ <n> * json <event>` commands, and each command's own reply
//! (an entry id, or an error) is the acknowledgement of that event. Owns the command
//! shape and the reading of replies; ordering, retries and spilling are the
//! [`super::queued`] sink's.

use super::queued::Transport;
use super::Record;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket timeouts: a stalled server shows as a failed batch after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A client for `url` with `TCP_NODELAY`, so a small pipeline (a quiet sensor sends a few
/// events at a time) is not held back by Nagle's algorithm waiting for an ACK.
pub fn client(url: &str) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .map_err(|e| format!("invalid Redis address: {e}"))?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info).map_err(|e| format!("invalid Redis address: {e}"))
}

/// A Redis stream as a [`Transport`].
pub struct RedisTransport {
    client: redis::Client,
    con: Option<redis::Connection>,
    stream: String,
    maxlen: u64,
}

impl RedisTransport {
    /// Checks the URL; no connection is made yet.
    pub fn new(client_url: &str, stream: &str, maxlen: u64) -> Result<RedisTransport, String> {
        let client =
            redis::Client::open(client_url).map_err(|e| format!("invalid Redis address: {e}"))?;
        Ok(RedisTransport {
            client,
            con: None,
            stream: stream.to_string(),
            maxlen,
        })
    }
}

impl Transport for RedisTransport {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn connect(&mut self) -> Result<(), String> {
        let con = self
            .client
            .get_connection_with_timeout(IO_TIMEOUT)
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        con.set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| format!("cannot set Redis socket timeouts: {e}"))?;
        self.con = Some(con);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.con.is_some()
    }

    fn send_timeout(&self) -> Duration {
        IO_TIMEOUT * 2
    }

    fn send(
        &mut self,
        batch: &[Arc<Record>],
        acked: &mut [bool],
        _deadline: Instant,
    ) -> Result<(), String> {
        let Some(con) = self.con.as_mut() else {
            return Err("not connected".into());
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for rec in batch {
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if self.maxlen > 0 {
                cmd.arg("MAXLEN").arg("~").arg(self.maxlen);
            }
            cmd.arg("*").arg("json").arg(&rec.line[..]);
        }
        let replies: Vec<redis::RedisResult<String>> = match pipe.query(con) {
            Ok(r) => r,
            Err(e) => {
                // The connection broke mid-batch: nothing is known to be stored (some may
                // be; resending them gives duplicates, never losses).
                self.con = None;
                return Err(format!("Redis pipeline failed: {e}"));
            }
        };
        let mut first_error = None;
        for (i, r) in replies.into_iter().enumerate() {
            match r {
                Ok(_) => {
                    if let Some(a) = acked.get_mut(i) {
                        *a = true;
                    }
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("XADD refused: {e}"));
                }
            }
        }
        match first_error {
            None if acked.iter().all(|&a| a) => Ok(()),
            None => Err("Redis answered fewer replies than commands".into()),
            Some(e) => Err(e),
        }
    }
}
