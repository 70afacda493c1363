//! Rule detectors for what an isolation forest cannot see (detection design §2.4): ARP
//! binding changes (ARP spoofing is not an IP flow) and Modbus/TCP writes from masters that
//! never wrote to that PLC in the training window (write function codes absent from
//! training make the Modbus feature constant, and the forest ignores constant features).

use crate::device::Inventory;
use crate::flow::FlowRecord;
use crate::packet::{Addr, ArpPacket};
use std::collections::{BTreeMap, BTreeSet};

/// Most IP→MAC bindings remembered (oldest-first bindings are kept; new IPs beyond the
/// cap are not tracked and counted).
pub const MAX_ARP_BINDINGS: usize = 65_536;
/// Most (IP, MAC) conflicts remembered for de-duplicating alerts.
pub const MAX_ARP_ALERTS: usize = 65_536;

/// An ARP binding conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpConflict {
    /// The IPv4 address claimed.
    pub ip: [u8; 4],
    /// The MAC it was bound to (first seen, or from the inventory).
    pub known_mac: [u8; 6],
    /// The MAC now claiming it.
    pub new_mac: [u8; 6],
    /// True when the known binding comes from the inventory.
    pub from_inventory: bool,
    /// ARP opcode of the claiming packet (1 request, 2 reply).
    pub opcode: u16,
}

/// One MAC that, in ARP replies, told host `b` it is `a` and told host `a` it is `b`:
/// the two-way poisoning of a man in the middle (arpspoof -r, ettercap), which needs no
/// known binding to be seen (a capture that starts after the poisoning began, or hosts
/// whose first ARP seen is already forged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossClaim {
    /// The claiming MAC.
    pub mac: [u8; 6],
    /// The address claimed in the packet that completed the pattern.
    pub ip: [u8; 4],
    /// The address of the host that packet was sent to, which the MAC also claimed (to
    /// the owner of `ip`).
    pub peer: [u8; 4],
}

/// (MAC, address, address): a MAC and two IPv4 addresses it spoke about.
type MacPair = ([u8; 6], [u8; 4], [u8; 4]);

/// How long after its last poisoning claim a victim's ARP cache is taken to keep the
/// attacker's MAC (Linux: reachable for 15-45 s, then stale until re-confirmed): traffic
/// relayed that long after the claims stopped still counts as intercepted.
pub const ARP_CACHE_LINGER: crate::time::Nanos = crate::time::Nanos::from_secs(60);

/// One MAC's current run of conflicting claims on an IP.
#[derive(Debug, Clone, Copy)]
struct Claims {
    /// First claim of the run (the one alerted on).
    first: crate::time::Timestamp,
    /// Latest claim.
    last: crate::time::Timestamp,
    /// The MAC the IP was bound to.
    known_mac: [u8; 6],
}

/// A run of forged claims on an IP shown by cross claims: from the first reply of the
/// pattern to the latest, while they keep coming less than the quiet time apart.
#[derive(Debug, Clone, Copy)]
struct Run {
    first: crate::time::Timestamp,
    last: crate::time::Timestamp,
}

/// An address claimed by a MAC not its own while a flow was open (see
/// [`ArpWatcher::claimed_during`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// The MAC the address is bound to, when one is known (inventory or first seen).
    pub known_mac: Option<[u8; 6]>,
    /// The MAC claiming it.
    pub new_mac: [u8; 6],
}

/// Inserts `key` into `map`, one of the watcher's tables capped at [`MAX_ARP_ALERTS`]
/// entries: when it is full, first drops the entries whose `last` time is `quiet` or more
/// before `now`; when it is still full and `key` is new, counts it in `untracked`
/// instead.
fn insert_capped<K: Ord, V>(
    map: &mut BTreeMap<K, V>,
    key: K,
    value: V,
    last: impl Fn(&V) -> crate::time::Timestamp,
    (now, quiet): (crate::time::Timestamp, crate::time::Nanos),
    untracked: &mut u64,
) {
    if map.len() >= MAX_ARP_ALERTS {
        map.retain(|_, v| now.since(last(v)) < quiet);
    }
    if map.len() < MAX_ARP_ALERTS || map.contains_key(&key) {
        map.insert(key, value);
    } else {
        *untracked += 1;
    }
}

/// Watches ARP sender bindings: the first MAC seen for an IP (or the inventory's MAC for
/// it) is the binding; another MAC claiming that IP raises an alert, once per (IP, MAC)
/// pair while its claims keep coming less than `quiet` apart: a poisoner re-sends every
/// few seconds, so one episode is one alert, and a later episode after a quiet gap (the
/// same attacker again) is a new alert.
#[derive(Debug)]
pub struct ArpWatcher {
    bindings: BTreeMap<[u8; 4], [u8; 6]>,
    /// The current run of conflicting claims per (IP, MAC).
    alerted: BTreeMap<([u8; 4], [u8; 6]), Claims>,
    quiet: crate::time::Nanos,
    /// Last reply per (MAC, address claimed, address told).
    replies: BTreeMap<MacPair, crate::time::Timestamp>,
    /// Last cross claim per (MAC, lower address, higher address), for one alert a run.
    crossed: BTreeMap<MacPair, crate::time::Timestamp>,
    /// (address, MAC) claims a cross claim showed to be forged: they never become a
    /// first-seen binding (so the genuine owner's reply becomes it, and the forger's
    /// later claims are conflicts with it).
    forged: BTreeSet<([u8; 4], [u8; 6])>,
    /// The current run of forged claims per (address, MAC) that cross claims showed,
    /// for [`ArpWatcher::claimed_during`] when no binding conflict shows them (no
    /// binding known yet: the forger's claims were the first seen).
    cross_runs: BTreeMap<([u8; 4], [u8; 6]), Run>,
    /// IPs (or conflicts) not tracked because a table was full.
    pub untracked: u64,
}

impl Default for ArpWatcher {
    fn default() -> Self {
        ArpWatcher::new(crate::time::Nanos::from_secs(300))
    }
}

impl ArpWatcher {
    /// A watcher that alerts again on a conflict after `quiet` without its claims.
    pub fn new(quiet: crate::time::Nanos) -> Self {
        ArpWatcher {
            bindings: BTreeMap::new(),
            alerted: BTreeMap::new(),
            replies: BTreeMap::new(),
            crossed: BTreeMap::new(),
            forged: BTreeSet::new(),
            cross_runs: BTreeMap::new(),
            quiet,
            untracked: 0,
        }
    }

    /// Checks one ARP packet; returns a conflict when a new MAC claims a bound IP (first
    /// claim, or first after a quiet gap).
    pub fn observe(
        &mut self,
        arp: &ArpPacket,
        inventory: Option<&Inventory>,
    ) -> Option<ArpConflict> {
        let ip = arp.sender_ip;
        let mac = arp.sender_mac;
        if ip == [0, 0, 0, 0] || mac == [0; 6] {
            return None; // ARP probes carry no binding
        }
        let inv_mac = inventory
            .and_then(|inv| inv.lookup(None, Addr::v4(ip)))
            .and_then(|e| e.mac.filter(|_| e.ip == Some(Addr::v4(ip))));
        let (known, from_inventory) = match (inv_mac, self.first_seen(ip)) {
            (Some(m), _) => (Some(m), true),
            (None, Some(m)) => (Some(m), false),
            (None, None) => (None, false),
        };
        match known {
            None if self.forged.contains(&(ip, mac)) => None,
            None => {
                if self.bindings.len() < MAX_ARP_BINDINGS {
                    self.bindings.insert(ip, mac);
                } else {
                    self.untracked += 1;
                }
                None
            }
            Some(k) if k == mac => None,
            Some(k) => {
                let ts = arp.ts;
                let run = Claims {
                    first: ts,
                    last: ts,
                    known_mac: k,
                };
                if let Some(c) = self.alerted.get_mut(&(ip, mac)) {
                    let repeat = ts.since(c.last) < self.quiet;
                    if repeat {
                        c.last = ts;
                        return None;
                    }
                    *c = run;
                } else {
                    insert_capped(
                        &mut self.alerted,
                        (ip, mac),
                        run,
                        |c| c.last,
                        (ts, self.quiet),
                        &mut self.untracked,
                    );
                }
                Some(ArpConflict {
                    ip,
                    known_mac: k,
                    new_mac: mac,
                    from_inventory,
                    opcode: arp.opcode,
                })
            }
        }
    }

    /// Checks one ARP packet for the two-way pattern of [`CrossClaim`]: a reply from MAC
    /// M claiming A, sent to B, after a reply from M claiming B sent to A less than the
    /// quiet time before. One alert per (M, {A, B}) while the replies keep coming less
    /// than the quiet time apart. Gratuitous replies (A = B) and probes are ignored.
    pub fn observe_cross(&mut self, arp: &ArpPacket) -> Option<CrossClaim> {
        let (mac, a, b, ts) = (arp.sender_mac, arp.sender_ip, arp.target_ip, arp.ts);
        let zero = [0u8; 4];
        if arp.opcode != 2 || a == b || a == zero || b == zero || mac == [0; 6] {
            return None;
        }
        let quiet = self.quiet;
        insert_capped(
            &mut self.replies,
            (mac, a, b),
            ts,
            |t| *t,
            (ts, quiet),
            &mut self.untracked,
        );
        let other = *self.replies.get(&(mac, b, a))?;
        if ts.since(other) >= quiet {
            return None;
        }
        for (ip, at) in [(a, ts), (b, other)] {
            if self.forged.len() < MAX_ARP_ALERTS {
                self.forged.insert((ip, mac));
            }
            if self.bindings.get(&ip) == Some(&mac) {
                self.bindings.remove(&ip);
            }
            self.extend_cross_run(ip, mac, at);
        }
        let key = (mac, a.min(b), a.max(b));
        if let Some(last) = self.crossed.get_mut(&key) {
            let repeat = ts.since(*last) < quiet;
            *last = ts;
            if repeat {
                return None;
            }
        } else {
            insert_capped(
                &mut self.crossed,
                key,
                ts,
                |t| *t,
                (ts, quiet),
                &mut self.untracked,
            );
        }
        Some(CrossClaim {
            mac,
            ip: a,
            peer: b,
        })
    }

    /// Notes a forged claim of `ip` by `mac` at `at` in that pair's run of cross claims
    /// (a new run after the quiet time without one).
    fn extend_cross_run(&mut self, ip: [u8; 4], mac: [u8; 6], at: crate::time::Timestamp) {
        let fresh = Run {
            first: at,
            last: at,
        };
        match self.cross_runs.get_mut(&(ip, mac)) {
            Some(r) if at.since(r.last) < self.quiet => {
                r.first = r.first.min(at);
                r.last = r.last.max(at);
            }
            Some(r) => *r = fresh,
            None => insert_capped(
                &mut self.cross_runs,
                (ip, mac),
                fresh,
                |r| r.last,
                (at, self.quiet),
                &mut self.untracked,
            ),
        }
    }

    /// The first-seen binding of `ip`, unless a cross claim showed it to be forged.
    fn first_seen(&self, ip: [u8; 4]) -> Option<[u8; 6]> {
        self.bindings
            .get(&ip)
            .filter(|&&m| !self.forged.contains(&(ip, m)))
            .copied()
    }

    /// A run of claims on `ip` by a MAC not its own that was in force at some time in
    /// [`from`, `to`] (from its first claim until [`ARP_CACHE_LINGER`] after its last):
    /// a binding conflict run (the known MAC is the binding), else a run of forged claims
    /// shown by cross claims (the known MAC is the current binding, if any). The
    /// earliest-starting run when there are several.
    pub fn claimed_during(
        &self,
        ip: [u8; 4],
        from: crate::time::Timestamp,
        to: crate::time::Timestamp,
    ) -> Option<Claimed> {
        let in_force = |first: crate::time::Timestamp, last: crate::time::Timestamp| {
            first <= to && last.plus(ARP_CACHE_LINGER) >= from
        };
        let range = (ip, [0u8; 6])..=(ip, [0xffu8; 6]);
        let conflict = self
            .alerted
            .range(range.clone())
            .filter(|(_, c)| in_force(c.first, c.last))
            .min_by_key(|(_, c)| c.first)
            .map(|(&(_, mac), c)| Claimed {
                known_mac: Some(c.known_mac),
                new_mac: mac,
            });
        conflict.or_else(|| {
            let known = self.first_seen(ip);
            self.cross_runs
                .range(range)
                .filter(|(_, r)| in_force(r.first, r.last))
                .min_by_key(|(_, r)| r.first)
                .map(|(&(_, mac), _)| Claimed {
                    known_mac: known,
                    new_mac: mac,
                })
        })
    }
}

/// The Modbus write allow-list: (PLC, master) pairs seen writing in training.
#[derive(Debug, Default, Clone)]
pub struct ModbusWriteRule {
    allowed: BTreeSet<(Addr, Addr)>,
    /// PLCs written to in training.
    plcs: BTreeSet<Addr>,
    /// Masters that wrote to any PLC in training.
    masters: BTreeSet<Addr>,
}

impl ModbusWriteRule {
    /// From the model bundle's list.
    pub fn new(pairs: &[(Addr, Addr)]) -> Self {
        ModbusWriteRule {
            allowed: pairs.iter().copied().collect(),
            plcs: pairs.iter().map(|p| p.0).collect(),
            masters: pairs.iter().map(|p| p.1).collect(),
        }
    }

    /// The (PLC, master) pair of a flow carrying Modbus writes, if any: the PLC is the
    /// endpoint on port 502.
    pub fn write_pair(rec: &FlowRecord) -> Option<(Addr, Addr)> {
        if rec.app.modbus_writes == 0 {
            return None;
        }
        if rec.resp.port == 502 {
            Some((rec.resp.addr, rec.orig.addr))
        } else if rec.orig.port == 502 {
            Some((rec.orig.addr, rec.resp.addr))
        } else {
            None
        }
    }

    /// A (PLC, master) pair for a flow whose writes come from a master not allowed for
    /// that PLC. A PLC nobody wrote to in training (one added since) accepts the masters
    /// that wrote to any PLC in training, as a new device falls back to its class's
    /// familiarity.
    pub fn check(&self, rec: &FlowRecord) -> Option<(Addr, Addr)> {
        Self::write_pair(rec).filter(|p| {
            if self.plcs.contains(&p.0) {
                !self.allowed.contains(p)
            } else {
                !self.masters.contains(&p.1)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn arp(ip: [u8; 4], mac: u8) -> ArpPacket {
        ArpPacket {
            ts: Timestamp(0),
            wire_len: 42,
            vlan: [0, 0],
            opcode: 2,
            sender_mac: [2, 0, 0, 0, 0, mac],
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip: [0; 4],
        }
    }

    #[test]
    fn a_second_episode_after_a_quiet_gap_alerts_again() {
        let mut w = ArpWatcher::new(crate::time::Nanos::from_secs(300));
        let at = |secs: i64, mac: u8| {
            let mut a = arp([10, 0, 0, 1], mac);
            a.ts = Timestamp::from_secs_nanos(secs, 0);
            a
        };
        assert!(w.observe(&at(0, 1), None).is_none());
        assert!(w.observe(&at(10, 9), None).is_some());
        // the poisoner re-sends every few seconds: one alert for the episode
        for t in (12..200).step_by(2) {
            assert!(w.observe(&at(t, 9), None).is_none());
        }
        // an hour later the same attacker poisons again
        assert!(w.observe(&at(3600, 9), None).is_some());
        assert!(w.observe(&at(3602, 9), None).is_none());
    }

    #[test]
    fn a_claim_is_in_force_from_its_first_claim_until_the_cache_linger_after_its_last() {
        let mut w = ArpWatcher::new(crate::time::Nanos::from_secs(300));
        let s = |secs: i64| Timestamp::from_secs_nanos(secs, 0);
        let at = |secs: i64, ip: u8, mac: u8| {
            let mut a = arp([10, 0, 0, ip], mac);
            a.ts = s(secs);
            a
        };
        w.observe(&at(0, 1, 1), None);
        w.observe(&at(0, 2, 2), None);
        // MAC 9 claims 10.0.0.1 from 100 s to 200 s, every 2 s.
        for t in (100..=200).step_by(2) {
            w.observe(&at(t, 1, 9), None);
        }
        let claimed =
            |w: &ArpWatcher, from: i64, to: i64| w.claimed_during([10, 0, 0, 1], s(from), s(to));
        let linger = ARP_CACHE_LINGER.0 / 1_000_000_000;
        assert_eq!(claimed(&w, 0, 99), None, "before the first claim");
        assert_eq!(
            claimed(&w, 0, 100),
            Some(Claimed {
                known_mac: Some([2, 0, 0, 0, 0, 1]),
                new_mac: [2, 0, 0, 0, 0, 9],
            })
        );
        assert!(claimed(&w, 150, 160).is_some());
        assert!(
            claimed(&w, 200 + linger, 400).is_some(),
            "the poisoned cache lingers"
        );
        assert_eq!(claimed(&w, 201 + linger, 400), None, "after the linger");
        // Only the claimed address: 10.0.0.2 was never claimed by another MAC.
        assert_eq!(w.claimed_during([10, 0, 0, 2], s(0), s(400)), None);
        // A new run after a quiet gap starts again at its own first claim.
        w.observe(&at(1000, 1, 9), None);
        assert_eq!(claimed(&w, 300, 999), None);
        assert!(claimed(&w, 300, 1000).is_some());
    }

    /// An ARP reply at `secs` from MAC `..:mac` saying 10.0.0.`claimed` is at that MAC,
    /// sent to 10.0.0.`told`.
    fn reply(secs: i64, mac: u8, claimed: u8, told: u8) -> ArpPacket {
        let mut a = arp([10, 0, 0, claimed], mac);
        a.target_ip = [10, 0, 0, told];
        a.ts = Timestamp::from_secs_nanos(secs, 0);
        a
    }

    #[test]
    fn one_mac_claiming_two_hosts_to_each_other_is_a_cross_claim() {
        let mut w = ArpWatcher::new(crate::time::Nanos::from_secs(300));
        // Ordinary replies: each host answers for itself.
        assert_eq!(w.observe_cross(&reply(0, 1, 1, 2)), None);
        assert_eq!(w.observe_cross(&reply(1, 2, 2, 1)), None);
        // A gateway answering two hosts for its own address.
        assert_eq!(w.observe_cross(&reply(2, 7, 7, 1)), None);
        assert_eq!(w.observe_cross(&reply(3, 7, 7, 2)), None);
        // MAC 9 tells 10.0.0.2 it is 10.0.0.1, then tells 10.0.0.1 it is 10.0.0.2.
        assert_eq!(w.observe_cross(&reply(10, 9, 1, 2)), None);
        let c = w.observe_cross(&reply(11, 9, 2, 1));
        assert_eq!(
            c,
            Some(CrossClaim {
                mac: [2, 0, 0, 0, 0, 9],
                ip: [10, 0, 0, 2],
                peer: [10, 0, 0, 1],
            })
        );
        // Re-sent every 2 s: one alert for the run, again after a quiet gap.
        for t in (12..300).step_by(2) {
            assert_eq!(
                w.observe_cross(&reply(t, 9, 1 + (t % 4 == 0) as u8, 2 - (t % 4 == 0) as u8)),
                None
            );
        }
        assert_eq!(w.observe_cross(&reply(2000, 9, 1, 2)), None);
        assert!(w.observe_cross(&reply(2001, 9, 2, 1)).is_some());
        // Requests and gratuitous replies never count.
        let mut req = reply(3000, 5, 1, 2);
        req.opcode = 1;
        assert_eq!(w.observe_cross(&req), None);
        assert_eq!(w.observe_cross(&reply(3001, 5, 2, 2)), None);
        // The two halves too far apart: no pattern.
        assert_eq!(w.observe_cross(&reply(5000, 6, 1, 2)), None);
        assert_eq!(w.observe_cross(&reply(5400, 6, 2, 1)), None);
    }

    #[test]
    fn a_forged_first_binding_gives_way_to_the_owner() {
        // The capture starts while MAC 9 poisons 10.0.0.1 and 10.0.0.2 both ways: its
        // claims are the first seen for both addresses.
        let mut w = ArpWatcher::new(crate::time::Nanos::from_secs(300));
        let both = |w: &mut ArpWatcher, a: &ArpPacket| (w.observe(a, None), w.observe_cross(a));
        assert_eq!(both(&mut w, &reply(0, 9, 1, 2)), (None, None));
        let (conflict, cross) = both(&mut w, &reply(0, 9, 2, 1));
        assert_eq!(conflict, None);
        assert!(cross.is_some());
        // No binding conflict shows these claims, but the cross claim does: both
        // addresses count as claimed by MAC 9 (for intercepted flows), owner unknown.
        let mac9 = [2, 0, 0, 0, 0, 9];
        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
            assert_eq!(
                w.claimed_during(
                    ip,
                    Timestamp::from_secs_nanos(0, 0),
                    Timestamp::from_secs_nanos(1, 0)
                ),
                Some(Claimed {
                    known_mac: None,
                    new_mac: mac9
                })
            );
        }
        let linger = ARP_CACHE_LINGER.0 / 1_000_000_000;
        let after = Timestamp::from_secs_nanos(linger + 1, 0);
        assert_eq!(
            w.claimed_during([10, 0, 0, 2], after, after),
            None,
            "after the linger"
        );
        // The owner of 10.0.0.1 (MAC 1) answers: it becomes the binding, no alert...
        assert_eq!(both(&mut w, &reply(5, 1, 1, 2)).0, None);
        // ...and the forger's next claim on 10.0.0.1 is a conflict with it.
        let c = both(&mut w, &reply(6, 9, 1, 2)).0;
        assert_eq!(c.map(|c| (c.known_mac[5], c.new_mac[5])), Some((1, 9)));
        // The claim on 10.0.0.2, still without a known owner, stays a cross-claim run.
        let t = Timestamp::from_secs_nanos(3, 0);
        assert_eq!(
            w.claimed_during([10, 0, 0, 2], t, t).map(|c| c.known_mac),
            Some(None)
        );
    }

    #[test]
    fn binding_change_alerts_once_per_pair() {
        let mut w = ArpWatcher::default();
        assert!(w.observe(&arp([10, 0, 0, 1], 1), None).is_none());
        assert!(w.observe(&arp([10, 0, 0, 1], 1), None).is_none());
        let c = w.observe(&arp([10, 0, 0, 1], 9), None);
        assert_eq!(c.map(|c| (c.known_mac[5], c.new_mac[5])), Some((1, 9)));
        assert!(w.observe(&arp([10, 0, 0, 1], 9), None).is_none());
        assert!(w.observe(&arp([0, 0, 0, 0], 7), None).is_none());
    }

    #[test]
    fn a_plc_new_since_training_accepts_the_known_masters_only() {
        let plc = Addr::v4([10, 20, 0, 31]);
        let new_plc = Addr::v4([10, 20, 0, 34]);
        let ews = Addr::v4([10, 20, 0, 20]);
        let rogue = Addr::v4([10, 20, 0, 66]);
        let rule = ModbusWriteRule::new(&[(plc, ews)]);
        let rec = |plc: Addr, master: Addr| {
            let mut r = crate::features::tests::rec(6, (master, 40000), (plc, 502));
            r.app.modbus_writes = 1;
            r
        };
        assert_eq!(rule.check(&rec(plc, ews)), None);
        assert_eq!(rule.check(&rec(plc, rogue)), Some((plc, rogue)));
        assert_eq!(rule.check(&rec(new_plc, ews)), None);
        assert_eq!(rule.check(&rec(new_plc, rogue)), Some((new_plc, rogue)));
    }
}
