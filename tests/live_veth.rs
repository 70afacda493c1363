//! Live capture end to end: a veth pair inside a network namespace of the test's own,
//! `flowsentry live` on one end, `tcpreplay` of a capture into the other end at a modest
//! rate, SIGTERM, and the flows written must equal those of `flowsentry replay` on the same
//! capture (same flow keys and packet counts per direction) with zero drops. A second test
//! renames the output file and sends SIGHUP mid-capture (logrotate) and checks that no
//! event is lost across the files.
//!
//! Needs root (network namespaces), `ip` and `tcpreplay`. Without them the tests fail when
//! `CI=true` and print a note otherwise. Traffic never leaves the namespace.

#[path = "common/events.rs"]
mod events;
#[path = "common/servers.rs"]
mod servers;

use events::{assert_same, by_seq};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowsentry");

/// Timeouts so large that only TCP teardown and SYN reuse split flows: live time (replayed
/// at a fixed rate) and capture time then cut the same flows.
const BIG: [&str; 12] = [
    "--tcp-idle",
    "1e8",
    "--tcp-syn-idle",
    "1e8",
    "--udp-idle",
    "1e8",
    "--other-idle",
    "1e8",
    "--active-timeout",
    "0",
    "--tcp-linger",
    "1e8",
];

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Root with `ip` and `tcpreplay`, or a reason why not.
fn prerequisites() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root".into());
    }
    for c in ["ip", "tcpreplay"] {
        if !have(c) {
            return Err(format!("`{c}` is not installed"));
        }
    }
    Ok(())
}

fn skip_or_fail(why: &str) {
    if ci() {
        panic!("CI=true but the live-capture test cannot run: {why}");
    }
    eprintln!("note: skipping live-capture test: {why}");
}

fn run(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("spawn");
    assert!(st.success(), "command failed: {}", args.join(" "));
}

/// A network namespace with a veth pair (veth0 <-> veth1), removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("fs-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&[
            "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ]);
        for dev in ["veth0", "veth1"] {
            // No addresses and no IPv6: the kernel itself sends nothing on these links.
            ns.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ]);
            ns.exec(&["ip", "link", "set", dev, "mtu", "9000", "up"]);
        }
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        run(&v);
    }

    /// Replays `pcap` into veth0 at `pps` packets/s and waits for it to finish.
    fn tcpreplay(&self, pps: u32, pcap: &Path) {
        let st = self
            .tcpreplay_bg(pps, pcap)
            .wait_with_output()
            .expect("tcpreplay");
        assert!(
            st.status.success(),
            "tcpreplay of {} failed",
            pcap.display()
        );
    }

    /// Starts replaying `pcap` into veth0 at `pps` packets/s.
    fn tcpreplay_bg(&self, pps: u32, pcap: &Path) -> Child {
        let pps = pps.to_string();
        let path = pcap.to_str().expect("utf-8 path");
        self.spawn(&["tcpreplay", "-q", "-i", "veth0", "--pps", &pps, path])
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

type FlowKey = (String, u64, String, u64, String, String);

/// Flow key → list of (pkts_toserver, pkts_toclient), from JSON Lines text.
fn flows(text: &str) -> BTreeMap<FlowKey, Vec<(u64, u64)>> {
    let mut m: BTreeMap<FlowKey, Vec<(u64, u64)>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        if v["event_type"] != "flow" {
            continue;
        }
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let key = (
            s("src_ip"),
            n("src_port"),
            s("dest_ip"),
            n("dest_port"),
            s("proto"),
            v["vlan"].to_string(),
        );
        let f = &v["flow"];
        let e = (
            f["pkts_toserver"].as_u64().unwrap_or(0),
            f["pkts_toclient"].as_u64().unwrap_or(0),
        );
        m.entry(key).or_default().push(e);
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

fn last_stats(text: &str) -> serde_json::Value {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event_type"] == "stats")
        .expect("a stats event")
}

fn replay_text(pcap: &Path) -> String {
    let out = Command::new(BIN)
        .args(["replay", "--no-progress"])
        .args(BIG)
        .arg(pcap)
        .output()
        .expect("run replay");
    assert!(out.status.success(), "replay of {} failed", pcap.display());
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Starts the sensor on veth1 with [`BIG`] timeouts and waits until it is capturing
/// (first stats event).
fn start_sensor(ns: &Netns, out: &Path, extra: &[&str]) -> Child {
    let mut args = BIG.to_vec();
    args.extend_from_slice(extra);
    start_sensor_with(ns, out, &args)
}

/// Starts the sensor on veth1 with exactly `extra` beyond the interface, stats interval
/// and output, and waits until it is capturing (first stats event).
fn start_sensor_with(ns: &Netns, out: &Path, extra: &[&str]) -> Child {
    let mut args = vec![
        BIN,
        "live",
        "-i",
        "veth1",
        "--stats-interval",
        "0.2",
        "--out",
    ];
    let out_s = out.to_str().expect("utf-8 path");
    args.push(out_s);
    args.extend_from_slice(extra);
    let mut child = ns.spawn(&args);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if std::fs::read_to_string(out).is_ok_and(|t| t.contains("\"stats\"")) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("flowsentry live did not start capturing within 20 s");
}

fn stop_sensor(child: Child) {
    let (st, err) = stop_sensor_status(child);
    assert!(st.success(), "flowsentry live exited with {st}: {err}");
}

/// Stops the sensor with SIGTERM; returns its exit status and stderr.
fn stop_sensor_status(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().to_string();
    run(&["kill", "-TERM", &pid]);
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (st, err);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "flowsentry live did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for name in [
        "fixture-benign-plc.pcap",
        "fixture-benign-thermostat.pcap",
        "fixture-portscan.pcap",
    ] {
        let p = root.join("fixtures/pcaps").join(name);
        if p.exists() {
            v.push(p);
        }
    }
    // Two real captures too (TCP with MPLS/VLAN/IPv6 mix, Modbus/TCP).
    let shared = root.join("../shared/pcaps");
    if shared.is_dir() {
        for rel in ["benign/test__test.pcap", "iot/modbus/modbusSmall.pcap"] {
            let p = shared.join(rel);
            assert!(p.exists(), "missing shared capture {}", p.display());
            v.push(p);
        }
    } else if ci() {
        panic!("CI=true but {} is missing", shared.display());
    }
    assert!(
        !v.is_empty(),
        "no captures found under fixtures/pcaps or ../shared/pcaps"
    );
    v
}

#[test]
fn live_capture_equals_replay_with_zero_drops() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    for pcap in captures() {
        let ns = Netns::new("live");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("events.jsonl");
        let sensor = start_sensor(&ns, &out, &["--fail-on", "anomaly"]);
        ns.tcpreplay(4000, &pcap);
        std::thread::sleep(Duration::from_millis(500));
        let (status, err) = stop_sensor_status(sensor);
        let live_text = std::fs::read_to_string(&out).expect("read live events");
        // `--fail-on anomaly`: exit 4 exactly when an anomaly event was written (the
        // port scan has them, the benign fixtures none), 0 otherwise.
        let alerted = live_text.contains("\"event_type\":\"anomaly\"");
        assert_eq!(
            status.code(),
            Some(if alerted { 4 } else { 0 }),
            "{}: live --fail-on anomaly exited with {status} (anomaly written: {alerted}): {err}",
            pcap.display()
        );
        let st = last_stats(&live_text);
        let qf: u64 = st["stats"]["queue_full"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).sum())
            .unwrap_or(0);
        assert_eq!(qf, 0, "{}: queue_full drops", pcap.display());
        assert_eq!(
            st["stats"]["capture"]["dropped"].as_u64(),
            Some(0),
            "{}: kernel drops",
            pcap.display()
        );
        // One handle's kernel timestamps never go backwards; the timer that advances the
        // flow clock on a quiet link is not a frame (every packet counted before).
        assert_eq!(
            st["stats"]["flows"]["ts_backwards"].as_u64(),
            Some(0),
            "{}: ts_backwards in a live capture",
            pcap.display()
        );
        let want = flows(&replay_text(&pcap));
        let got = flows(&live_text);
        for (k, v) in &want {
            assert_eq!(
                got.get(k),
                Some(v),
                "{}: flow {:?} differs (replay {:?})",
                pcap.display(),
                k,
                v
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{}: live has extra flows",
            pcap.display()
        );
    }
}

#[test]
fn sighup_reopen_and_rotation_lose_no_event() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let pcap = captures().remove(0);
    let ns = Netns::new("hup");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let sensor = start_sensor(&ns, &out, &["--out-rotate-secs", "1"]);
    let pid = sensor.id().to_string();
    let replayer = ns.tcpreplay_bg(3000, &pcap);
    // logrotate-style: move the file away, then SIGHUP, twice during the replay.
    for k in 1..=2 {
        std::thread::sleep(Duration::from_millis(700));
        let moved = dir.path().join(format!("moved-{k}.jsonl"));
        std::fs::rename(&out, &moved).expect("rename output");
        run(&["kill", "-HUP", &pid]);
    }
    let st = replayer.wait_with_output().expect("tcpreplay");
    assert!(st.status.success(), "tcpreplay failed");
    std::thread::sleep(Duration::from_millis(500));
    stop_sensor(sensor);
    let mut all = String::new();
    let mut files = 0;
    for e in std::fs::read_dir(dir.path()).expect("list dir") {
        let p = e.expect("entry").path();
        all.push_str(&std::fs::read_to_string(&p).expect("read"));
        files += 1;
    }
    assert!(
        files >= 3,
        "expected the moved files plus the live one, got {files}"
    );
    let want = flows(&replay_text(&pcap));
    let got = flows(&all);
    assert_eq!(
        got, want,
        "events lost or duplicated across SIGHUP/rotation"
    );
}

#[test]
fn sighup_refuses_a_bad_new_model_and_keeps_the_old_one() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let pcap = captures().remove(0);
    let ns = Netns::new("mdl");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let model = dir.path().join("model.fsm");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.fsm");
    std::fs::copy(&shipped, &model).expect("copy model");
    let model_s = model.to_str().expect("utf-8").to_string();
    let sensor = start_sensor(&ns, &out, &["--model", &model_s]);
    let pid = sensor.id().to_string();
    // Corrupt "new" models: the sensor must refuse each and keep scoring with the old
    // one. The truncated copy keeps the header, and so the model id, of the model in
    // use: a reload once compared ids and kept it silently.
    let good = std::fs::read(&model).expect("read model");
    std::fs::write(&model, &good[..100]).expect("write truncated model");
    run(&["kill", "-HUP", &pid]);
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(&model, b"FSMODEL\0garbage").expect("write bad model");
    run(&["kill", "-HUP", &pid]);
    std::thread::sleep(Duration::from_millis(400));
    ns.tcpreplay(4000, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    stop_sensor(sensor);
    let text = std::fs::read_to_string(&out).expect("read events");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"event_type\":\"error\""))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "one error event per refused model: {errors:?}"
    );
    assert!(errors[0].contains("truncated"), "{}", errors[0]);
    for err in &errors {
        assert!(
            err.contains("model reload refused") && err.contains("model.fsm"),
            "{err}"
        );
    }
    let st = last_stats(&text);
    assert!(
        st["stats"]["detection"]["scored"].as_u64().unwrap_or(0) > 0,
        "the old model must keep scoring after the refused reload"
    );
    assert_eq!(
        flows(&text),
        flows(&replay_text(&pcap)),
        "flows lost around the reload"
    );
}

/// `--user` naming no user is a bad option (exit 2, the name in the message), found once
/// the capture is open, before anything is captured.
#[test]
fn an_unknown_user_is_a_usage_error() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let ns = Netns::new("nou");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let child = ns.spawn(&[
        BIN,
        "live",
        "-i",
        "veth1",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--user",
        "no-such-user-fs",
    ]);
    let got = child.wait_with_output().expect("wait for flowsentry live");
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(
        got.status.code(),
        Some(2),
        "exit status {}: {err}",
        got.status
    );
    assert!(
        err.contains("no-such-user-fs"),
        "message names the user: {err}"
    );
}

/// `--user`: the process runs as the user, and the output file it was started with is
/// handed to that user, so a SIGHUP (logrotate's, or a model reload) that reopens the
/// same path keeps working (an audit found it made the sensor exit 1, losing every open
/// flow, because root had created the file).
#[test]
fn user_option_drops_root_after_opening_the_capture() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let ns = Netns::new("usr");
    let dir = tempfile::tempdir().expect("tempdir");
    // The directory is only traversable by others, not writable: the user can reopen the
    // file it was given, not create new ones.
    run(&["chmod", "0755", dir.path().to_str().expect("utf-8 path")]);
    let out = dir.path().join("events.jsonl");
    let sensor = start_sensor(&ns, &out, &["--user", "nobody"]);
    run(&["kill", "-HUP", &sensor.id().to_string()]);
    let pcap = captures().remove(0);
    ns.tcpreplay(2000, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", sensor.id())).expect("proc status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or("")
        .to_string();
    let expect_uid = Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .expect("id nobody");
    let nobody = String::from_utf8_lossy(&expect_uid.stdout)
        .trim()
        .to_string();
    let (st, err) = stop_sensor_status(sensor);
    assert!(st.success(), "flowsentry live exited with {st}: {err}");
    assert!(
        !err.contains("cannot reopen"),
        "SIGHUP reopen failed: {err}"
    );
    let fields: Vec<&str> = uid_line.split_whitespace().collect();
    assert_eq!(
        fields.get(1).copied(),
        Some(nobody.as_str()),
        "real uid after drop: {uid_line}"
    );
    assert_eq!(
        fields.get(2).copied(),
        Some(nobody.as_str()),
        "effective uid after drop: {uid_line}"
    );
    let text = std::fs::read_to_string(&out).expect("events");
    assert!(
        text.lines().last().is_some_and(|l| l.contains("\"stats\"")),
        "final stats written"
    );
    assert!(
        !text.contains("\"event_type\":\"error\""),
        "an error event: {text}"
    );
    assert_eq!(
        flows(&text),
        flows(&replay_text(&pcap)),
        "flows after the SIGHUP differ from replay's"
    );
}

/// A mirror port whose link goes down is reported (an `error` event and a stderr line),
/// and again when it is back, instead of looking like a quiet link; capture goes on.
#[test]
fn link_down_and_up_are_reported() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let ns = Netns::new("link");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let sensor = start_sensor(&ns, &out, &[]);
    ns.exec(&["ip", "link", "set", "veth1", "down"]);
    std::thread::sleep(Duration::from_millis(2500));
    ns.exec(&["ip", "link", "set", "veth1", "up"]);
    std::thread::sleep(Duration::from_millis(2500));
    let pcap = captures().remove(0);
    ns.tcpreplay(2000, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    let (st, err) = stop_sensor_status(sensor);
    assert!(st.success(), "flowsentry live exited with {st}: {err}");
    let text = std::fs::read_to_string(&out).expect("events");
    let errors: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event_type"] == "error")
        .filter_map(|e| e["error"].as_str().map(str::to_owned))
        .collect();
    assert!(
        errors
            .first()
            .is_some_and(|m| m.contains("veth1: link is down")),
        "{errors:?}"
    );
    assert!(
        errors
            .get(1)
            .is_some_and(|m| m.contains("veth1: link is up again")),
        "{errors:?}"
    );
    assert!(err.contains("link is down"), "stderr: {err}");
    assert_eq!(
        flows(&text),
        flows(&replay_text(&pcap)),
        "capture after the link came back differs from replay"
    );
}

/// A live sensor writing to a pipe whose reader goes away has lost events: it stops with
/// exit 1 and says so (it used to exit 0 silently, like a clean stop, so a service
/// manager's restart-on-failure never restarted it).
#[test]
fn live_output_pipe_closed_by_its_reader_is_a_failure() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let ns = Netns::new("pipe");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "live", "-i", "veth1"])
        .args(["--stats-interval", "0.2", "--out", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn in netns");
    let mut first = String::new();
    {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut r = std::io::BufReader::new(stdout);
        r.read_line(&mut first).expect("read the first event");
        // `r` dropped here: the pipe's only reader is gone.
    }
    assert!(first.contains("\"stats\""), "first event: {first}");
    let t0 = Instant::now();
    let st = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "flowsentry live kept running with its output gone"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(st.code(), Some(1), "exit status {st}, stderr: {err}");
    assert!(err.contains("closed the pipe"), "stderr: {err}");
}

/// Two capture handles in one PACKET_FANOUT group: every capture thread routes to every
/// worker by flowsentry's flow hash, so the flows equal replay's even where the kernel's
/// fanout hash splits a flow over the handles (it leaves out the ports of IP fragments and
/// hashes VXLAN's outer header: before the shared workers, `ip-frag.pcap`'s flows and
/// `vxlan.pcap`'s inner flows came out split into more records).
#[test]
fn two_capture_threads_in_a_fanout_group_equal_replay() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let mut pcaps = vec![captures().remove(0)];
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if shared.is_dir() {
        for rel in [
            "robustness/ipv6-frag/ip-frag.pcap",
            "robustness/encapsulation/vxlan.pcap",
        ] {
            let p = shared.join(rel);
            assert!(p.exists(), "missing shared capture {}", p.display());
            pcaps.push(p);
        }
    } else if ci() {
        panic!("CI=true but {} is missing", shared.display());
    }
    for pcap in pcaps {
        let ns = Netns::new("fan");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("events.jsonl");
        let sensor = start_sensor(&ns, &out, &["--capture-threads", "2", "--workers", "1"]);
        ns.tcpreplay(4000, &pcap);
        std::thread::sleep(Duration::from_millis(500));
        stop_sensor(sensor);
        let text = std::fs::read_to_string(&out).expect("read events");
        let st = last_stats(&text);
        assert_eq!(
            st["stats"]["queue_full"].as_array().map(|a| a.len()),
            Some(2),
            "{}: one queue per worker (2 capture threads x 1)",
            pcap.display()
        );
        let frames = st["stats"]["frames"].as_u64().unwrap_or(0);
        assert!(frames > 0, "{}: nothing captured", pcap.display());
        assert_eq!(
            flows(&text),
            flows(&replay_text(&pcap)),
            "{}: flows differ with two capture threads",
            pcap.display()
        );
    }
}

/// redis-server inside the test's namespace (on the namespace's own loopback, so the
/// sensor in the namespace reaches it), append-only with fsync on every write so a restart
/// keeps the stream.
struct NsRedis<'a> {
    ns: &'a Netns,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl<'a> NsRedis<'a> {
    fn start(ns: &'a Netns, dir: &Path) -> NsRedis<'a> {
        let mut r = NsRedis {
            ns,
            port: 6390,
            dir: dir.to_path_buf(),
            child: None,
        };
        r.spawn();
        r
    }

    fn ping(&self) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name, "redis-cli", "-p"])
            .arg(self.port.to_string())
            .arg("ping")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    }

    fn spawn(&mut self) {
        let args = servers::redis_args(self.port, &self.dir, "yes", "always");
        let mut argv = vec!["redis-server"];
        argv.extend(args.iter().map(String::as_str));
        self.child = Some(self.ns.spawn(&argv));
        let t0 = Instant::now();
        while !self.ping() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "redis-server did not start in the namespace"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            run(&["kill", "-TERM", &c.id().to_string()]);
            let _ = c.wait();
        }
        assert!(!self.ping(), "redis-server still answers after SIGTERM");
    }

    /// Every event the stream holds, one JSON line each (`flowsentry tail`).
    fn tail(&self, url: &str) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name, BIN, "tail", url]);
        events::run_tail(cmd, url)
    }
}

impl Drop for NsRedis<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The live sensor's writer feeds a Redis sink while capturing; Redis is stopped for two
/// seconds in the middle of the capture and restarted. Every event of the file output must
/// be in the stream afterwards, byte for byte, the outage must have gone through the spill,
/// nothing may be dropped, and capture must not have lost a frame meanwhile.
#[test]
fn live_sensor_feeds_a_redis_sink_through_an_outage() {
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    if !have("redis-server") || !have("redis-cli") {
        return skip_or_fail("redis-server / redis-cli are not installed");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pcap = root.join("fixtures/pcaps/fixture-mirai.pcap");
    assert!(pcap.exists(), "missing {}", pcap.display());
    let ns = Netns::new("snk");
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rdir = dir.path().join("redis");
    std::fs::create_dir(&rdir).expect("mkdir");
    let mut redis = NsRedis::start(&ns, &rdir);
    let url = format!("redis://127.0.0.1:{}/live", redis.port);
    let out = dir.path().join("events.jsonl");
    let spill = dir.path().join("spill").display().to_string();
    let inv = root
        .join("fixtures/pcaps/fixture-mirai.inventory.toml")
        .display()
        .to_string();
    // Default timeouts: scan flows end (RST, SYN timeout) while the capture runs, so flow
    // events as well as the periodic stats events are produced during the outage.
    let sensor = start_sensor_with(
        &ns,
        &out,
        &[
            "--inventory",
            &inv,
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-queue",
            "4",
            "--sink-drain-secs",
            "30",
        ],
    );
    let replayer = ns.tcpreplay_bg(1500, &pcap);
    let t0 = Instant::now();
    while redis.tail(&url).lines().count() < 10 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no events reached Redis before the outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    redis.stop();
    let at_stop = std::fs::read_to_string(&out)
        .expect("events")
        .lines()
        .count();
    std::thread::sleep(Duration::from_secs(2));
    let during = std::fs::read_to_string(&out)
        .expect("events")
        .lines()
        .count()
        - at_stop;
    redis.spawn();
    let st = replayer.wait_with_output().expect("tcpreplay");
    assert!(st.status.success(), "tcpreplay failed");
    std::thread::sleep(Duration::from_millis(500));
    stop_sensor(sensor);
    assert!(during > 4, "only {during} events during the outage");

    let text = std::fs::read_to_string(&out).expect("read events");
    let file = by_seq(&text, "file");
    assert_same(&file, &redis.tail(&url), "redis after the live outage");
    let flows_n = text
        .lines()
        .filter(|l| l.contains("\"event_type\":\"flow\""))
        .count();
    assert!(flows_n > 100, "only {flows_n} flow events");

    let st = last_stats(&text);
    assert_eq!(
        st["stats"]["capture"]["dropped"].as_u64(),
        Some(0),
        "kernel drops while the sink was down"
    );
    let s = &st["stats"]["sinks"][0];
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
    assert!(n("spilled") > 0, "the outage must have spilled: {s}");
    assert_eq!(n("dropped_total"), 0, "{s}");
    assert_eq!(
        n("spill_events") + n("queued") + n("in_flight"),
        0,
        "drained: {s}"
    );
    assert!(n("delivered") >= file.len() as u64 - 1, "{s}");
    eprintln!(
        "live + redis sink: {} events ({flows_n} flows), {during} written during the \
         2 s outage, {} spilled, {} retried, {} delivered",
        file.len(),
        n("spilled"),
        n("retried"),
        n("delivered")
    );
}
