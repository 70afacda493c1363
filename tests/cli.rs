//! Command-line behaviour of `flowsentry replay`: help, exit codes and messages for bad
//! inputs, config and filters, stdin, `--out`, a closed output pipe, and one flow table
//! across several input files. Captures are written by the test itself.

mod common;

use common::{exit_code, parse_lines, run, stats_of, BIN};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Ethernet + IPv4 + UDP frame from 10.0.0.`a`:`sp` to 10.0.0.`b`:`dp` with `n` payload bytes.
fn udp_frame(a: u8, sp: u16, b: u8, dp: u16, n: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, b, 0x02, 0, 0, 0, 0, a, 0x08, 0x00];
    let total = (20 + 8 + n) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, a, 10, 0, 0, b]);
    f.extend_from_slice(&sp.to_be_bytes());
    f.extend_from_slice(&dp.to_be_bytes());
    f.extend_from_slice(&((8 + n) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend(std::iter::repeat_n(0xab, n));
    f
}

/// A little-endian microsecond pcap (Ethernet) of (seconds, frame).
fn pcap(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for (s, d) in frames {
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(d.len() as u32).to_le_bytes());
        v.extend_from_slice(&(d.len() as u32).to_le_bytes());
        v.extend_from_slice(d);
    }
    v
}

/// A capture with two UDP flows (3 packets and 2 packets), one second apart.
fn sample() -> Vec<u8> {
    pcap(&[
        (100, udp_frame(1, 5000, 2, 53, 10)),
        (101, udp_frame(2, 53, 1, 5000, 30)),
        (102, udp_frame(3, 6000, 4, 502, 12)),
        (103, udp_frame(1, 5000, 2, 53, 10)),
        (104, udp_frame(4, 502, 3, 6000, 12)),
    ])
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write temp file");
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp path is UTF-8")
}

/// Output lines without the wall-clock figures of the stats event.
fn stable(stdout: &[u8]) -> Vec<serde_json::Value> {
    let mut ev = parse_lines(stdout, "replay");
    if let Some(o) = ev.last_mut().and_then(|e| e["stats"].as_object_mut()) {
        o.remove("wall_time_s");
        o.remove("packets_per_sec");
        o.remove("inputs");
    }
    ev
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

#[test]
fn help_works() {
    let o = run(&["--help"], None);
    assert_eq!(exit_code(&o, "--help"), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("replay"));
    let o = run(&["replay", "--help"], None);
    assert_eq!(exit_code(&o, "replay --help"), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--bpf",
        "--out",
        "--reader",
        "--tcp-idle",
        "--active-timeout",
    ] {
        assert!(text.contains(flag), "replay --help lacks {flag}:\n{text}");
    }
}

#[test]
fn missing_file_exits_3_naming_it() {
    let o = run(&["replay", "--no-progress", "/nonexistent/cap.pcap"], None);
    assert_eq!(exit_code(&o, "missing file"), 3);
    let e = stderr(&o);
    assert!(e.contains("/nonexistent/cap.pcap"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // The stats event is still written.
    let ev = parse_lines(&o.stdout, "missing file");
    assert_eq!(stats_of(&ev, "missing file")["frames"], 0);
}

#[test]
fn live_on_a_missing_interface_exits_3_naming_it() {
    // Exit 3 is "an input could not be read"; a live interface that cannot be opened
    // is that input (as root: "No such device"; otherwise a permission error).
    let o = run(&["live", "-i", "fs-nosuch0", "--no-detect"], None);
    assert_eq!(exit_code(&o, "missing interface"), 3, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("fs-nosuch0"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn directory_and_text_file_are_not_a_pcap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let txt = write(dir.path(), "notes.txt", b"hello, this is not a capture\n");
    for (p, what) in [(txt.as_path(), "text file"), (dir.path(), "directory")] {
        for reader in ["native", "libpcap"] {
            let o = run(&["replay", "--no-progress", "--reader", reader, s(p)], None);
            assert_eq!(exit_code(&o, what), 3, "{what} ({reader}): {}", stderr(&o));
            let e = stderr(&o);
            assert!(e.contains(s(p)), "{what} ({reader}): {e}");
            assert!(e.contains("not a pcap"), "{what} ({reader}): {e}");
            assert!(!e.contains("panicked"), "{e}");
        }
    }
}

#[test]
fn unknown_config_key_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = write(dir.path(), "a.pcap", &sample());
    let cfg = write(dir.path(), "c.toml", b"[flow]\ntcp_idle_secz = 5\n");
    let o = run(
        &["replay", "--no-progress", "--config", s(&cfg), s(&cap)],
        None,
    );
    assert_eq!(exit_code(&o, "bad config"), 2);
    let e = stderr(&o);
    assert!(e.contains("tcp_idle_secz") && e.contains(s(&cfg)), "{e}");
    // A bad value is named too.
    let o = run(
        &["replay", "--no-progress", "--udp-idle", "-1", s(&cap)],
        None,
    );
    assert_eq!(exit_code(&o, "bad value"), 2, "{}", stderr(&o));
}

#[test]
fn bad_bpf_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = write(dir.path(), "a.pcap", &sample());
    let o = run(
        &[
            "replay",
            "--no-progress",
            "--bpf",
            "tcp port nonsense((",
            s(&cap),
        ],
        None,
    );
    let code = exit_code(&o, "bad bpf");
    assert_ne!(code, 0);
    let e = stderr(&o);
    assert!(
        e.contains("invalid BPF filter") && e.contains("nonsense(("),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    let o = run(
        &[
            "replay",
            "--no-progress",
            "--bpf",
            "tcp port nonsense((",
            "-",
        ],
        Some(&sample()),
    );
    let e = stderr(&o);
    assert_ne!(exit_code(&o, "bad bpf stdin"), 0);
    assert!(e.contains("invalid BPF filter"), "{e}");
}

/// A little-endian pcapng block of `kind` with `body` (padded to 4 bytes).
fn ng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    while b.len() % 4 != 0 {
        b.push(0);
    }
    let total = (12 + b.len()) as u32;
    let mut v = kind.to_le_bytes().to_vec();
    v.extend_from_slice(&total.to_le_bytes());
    v.extend_from_slice(&b);
    v.extend_from_slice(&total.to_le_bytes());
    v
}

/// A pcapng file with an Ethernet interface and a LINKTYPE_IPV4 (228) interface, one
/// UDP packet on each (the IPv4 one is the Ethernet frame's IP packet), the Ethernet
/// interface's first unless `ipv4_first`.
fn two_link_pcapng(ipv4_first: bool) -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut v = ng_block(0x0a0d_0d0a, &shb);
    let epb = |iface: u32, data: &[u8]| {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1_000_000u32.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        ng_block(6, &b)
    };
    let idb = |link: u16| {
        let mut b = link.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&65535u32.to_le_bytes());
        ng_block(1, &b)
    };
    let frame = udp_frame(1, 5000, 2, 53, 10);
    v.extend(idb(1));
    v.extend(idb(228));
    if ipv4_first {
        v.extend(epb(1, &frame[14..]));
        v.extend(epb(0, &frame));
    } else {
        v.extend(epb(0, &frame));
        v.extend(epb(1, &frame[14..]));
    }
    v
}

/// A filter that compiles for the file's first link type but not for a later interface's
/// stops the input there with a message naming the file, the packet and its byte offset
/// (it used to name neither).
#[test]
fn bpf_failing_on_a_later_link_type_names_the_file_and_packet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = write(dir.path(), "two-links.pcapng", &two_link_pcapng(false));
    let o = run(&["replay", "--no-progress", s(&cap)], None);
    assert_eq!(exit_code(&o, "two-link pcapng"), 0, "{}", stderr(&o));
    let filtered = |cap: &Path| {
        run(
            &[
                "replay",
                "--no-progress",
                "--bpf",
                "ether broadcast or udp",
                s(cap),
            ],
            None,
        )
    };
    let o = filtered(&cap);
    assert_eq!(exit_code(&o, "two-link pcapng with an Ethernet filter"), 3);
    let e = stderr(&o);
    assert!(
        e.contains("two-links.pcapng: packet 2 at byte offset 152") // SHB 28, 2 IDBs 40, EPB 84
            && e.contains("'ether broadcast or udp' does not compile for its link type Ipv4"),
        "{e}"
    );
    let events = parse_lines(&o.stdout, "two-link pcapng with an Ethernet filter");
    assert_eq!(
        stats_of(&events, "two-link")["frames"],
        1,
        "the frame before is kept"
    );
    // The same when the failing link type's frame comes first: the expression compiles
    // for Ethernet, so it is the link type, not the expression.
    let cap = write(dir.path(), "ipv4-first.pcapng", &two_link_pcapng(true));
    let o = filtered(&cap);
    assert_eq!(
        exit_code(&o, "ipv4-first pcapng with an Ethernet filter"),
        3
    );
    let e = stderr(&o);
    assert!(
        e.contains("ipv4-first.pcapng: packet 1 at byte offset 68") // SHB 28, 2 IDBs 40
            && e.contains("does not compile for its link type Ipv4"),
        "{e}"
    );
}

#[test]
fn stdin_equals_file_and_out_path_equals_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = write(dir.path(), "a.pcap", &sample());
    let file = run(&["replay", "--no-progress", s(&cap)], None);
    assert_eq!(exit_code(&file, "file"), 0, "{}", stderr(&file));
    let stdin = run(&["replay", "--no-progress", "-"], Some(&sample()));
    assert_eq!(exit_code(&stdin, "stdin"), 0, "{}", stderr(&stdin));
    let (a, b) = (stable(&file.stdout), stable(&stdin.stdout));
    assert_eq!(a.len(), 3, "two flows and stats: {a:?}");
    assert_eq!(a, b);
    let out = dir.path().join("events.jsonl");
    let o = run(
        &["replay", "--no-progress", "--out", s(&out), s(&cap)],
        None,
    );
    assert_eq!(exit_code(&o, "--out"), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "--out PATH writes nothing to stdout");
    let written = std::fs::read(&out).expect("read --out file");
    assert_eq!(stable(&written), a);
}

#[test]
fn closed_output_pipe_exits_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Enough flows that the output does not fit in the pipe buffer.
    let frames: Vec<(u32, Vec<u8>)> = (0..20_000u32)
        .map(|i| (i / 100, udp_frame(1, 1024 + (i % 60_000) as u16, 2, 9, 4)))
        .collect();
    let cap = write(dir.path(), "many.pcap", &pcap(&frames));
    let mut child = Command::new(BIN)
        .args(["replay", "--no-progress", s(&cap)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flowsentry");
    {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        r.read_line(&mut line).expect("read one line");
        assert!(line.contains("\"event_type\":\"flow\""), "{line}");
    } // reader dropped: the pipe is closed
    let out = child.wait_with_output().expect("wait");
    assert_eq!(exit_code(&out, "closed pipe"), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "stderr: {}", stderr(&out));
}

#[test]
fn several_files_share_one_flow_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = [
        (100, udp_frame(1, 5000, 2, 53, 10)),
        (101, udp_frame(2, 53, 1, 5000, 30)),
        (102, udp_frame(1, 5000, 2, 53, 10)),
        (103, udp_frame(2, 53, 1, 5000, 30)),
    ];
    let one = write(dir.path(), "whole.pcap", &pcap(&all));
    let a = write(dir.path(), "part1.pcap", &pcap(&all[..2]));
    let b = write(dir.path(), "part2.pcap", &pcap(&all[2..]));
    let whole = run(&["replay", "--no-progress", s(&one)], None);
    let split = run(&["replay", "--no-progress", s(&a), s(&b)], None);
    assert_eq!(exit_code(&split, "two files"), 0, "{}", stderr(&split));
    let (w, p) = (stable(&whole.stdout), stable(&split.stdout));
    assert_eq!(w.len(), 2, "one flow and stats: {w:?}");
    assert_eq!(w, p, "a flow split over two files must be one flow");
    assert_eq!(w[0]["flow"]["pkts_toserver"], 2);
    assert_eq!(w[0]["flow"]["pkts_toclient"], 2);
    // Both inputs are listed in order in the stats event.
    let ev = parse_lines(&split.stdout, "two files");
    let inputs = &stats_of(&ev, "two files")["inputs"];
    assert_eq!(inputs[0]["path"], s(&a));
    assert_eq!(inputs[1]["path"], s(&b));
    // An unreadable file in the middle is reported, the others still read.
    let bad = write(dir.path(), "bad.pcap", b"garbage garbage garbage");
    let o = run(&["replay", "--no-progress", s(&a), s(&bad), s(&b)], None);
    assert_eq!(exit_code(&o, "bad middle file"), 3);
    assert!(stderr(&o).contains(s(&bad)), "{}", stderr(&o));
    let mut got = stable(&o.stdout);
    let mut want = w.clone();
    got.pop();
    want.pop();
    assert_eq!(got, want, "flows across the good files are unchanged");
}

/// A capture of a link type flowsentry does not decode (147, USER0) next to a good one:
/// the frames are counted and skipped, the user is told which file and link type, and
/// the good file's flows are all there (both readers, inline and threaded).
#[test]
fn unsupported_link_type_is_counted_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut odd = sample();
    odd[20..24].copy_from_slice(&147u32.to_le_bytes());
    let odd = write(dir.path(), "user0.pcap", &odd);
    let good = write(dir.path(), "good.pcap", &sample());
    for reader in ["native", "libpcap"] {
        for workers in ["0", "2"] {
            let what = format!("{reader}, {workers} workers");
            let o = run(
                &[
                    "replay",
                    "--no-progress",
                    "--reader",
                    reader,
                    "--workers",
                    workers,
                    s(&odd),
                    s(&good),
                ],
                None,
            );
            assert_eq!(exit_code(&o, &what), 0, "{what}: {}", stderr(&o));
            let e = stderr(&o);
            assert_eq!(e.lines().count(), 1, "{what}: {e}");
            assert!(
                e.contains("user0.pcap") && e.contains("5 frames have link type 147"),
                "{what}: {e}"
            );
            let ev = parse_lines(&o.stdout, &what);
            let st = stats_of(&ev, &what);
            assert_eq!(st["frames"], 10, "{what}");
            assert_eq!(st["decode_errors"]["unsupported_link_type"], 5, "{what}");
            let flows = ev.iter().filter(|v| v["event_type"] == "flow").count();
            assert_eq!(flows, 2, "{what}: the good file's flows");
        }
    }
}
