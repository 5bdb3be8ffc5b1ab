//! Keeping the maps equal to what userspace wants: the policy's entries, the same-tenant peers
//! and the classes' flags as a rule set swapped whole, and the cgroups' owners in place; all
//! written as differences.

use super::*;

/// A trie's entries of one rule set: (prefix length, class id and address) → rule.
type TrieEntries<Data> = HashMap<(u32, Data), RawRule>;

/// One rule set of the policy maps, keyed by class id alone (the set is added when written).
#[derive(Debug, Default, PartialEq)]
struct RuleSet {
    v4: TrieEntries<V4Data>,
    v6: TrieEntries<V6Data>,
    peers: HashMap<RawPeerKey, RawRule>,
    class_flags: [u32; MAX_CLASSES as usize],
}

impl RuleSet {
    fn from_desired(desired: &Desired) -> RuleSet {
        let mut set = RuleSet::default();
        for ((class, net), entry) in desired.rules.iter() {
            let raw = RawRule::from(entry);
            let prefix = net.prefix_len() as u32 + 32;
            match net {
                IpNet::V4(n) => set
                    .v4
                    .insert((prefix, trie_data(*class as u32, &n.addr().octets())), raw),
                IpNet::V6(n) => set
                    .v6
                    .insert((prefix, trie_data(*class as u32, &n.addr().octets())), raw),
            };
        }
        set.peers = desired
            .peers
            .iter()
            .map(|((class, tenant, ip), entry)| {
                (RawPeerKey::new(*class, *tenant, ip), RawRule::from(entry))
            })
            .collect();
        for (class, flags) in &desired.class_flags {
            set.class_flags[*class as usize] = *flags;
        }
        set
    }

    /// Without pruning, a new set keeps what the live one holds and it lacks.
    fn keep_missing_from(&mut self, live: &RuleSet) {
        fn keep<K: Clone + Eq + std::hash::Hash, V: Clone>(
            into: &mut HashMap<K, V>,
            from: &HashMap<K, V>,
        ) {
            for (key, value) in from {
                into.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        keep(&mut self.v4, &live.v4);
        keep(&mut self.v6, &live.v6);
        keep(&mut self.peers, &live.peers);
    }

    fn check_fits(&self) -> Result<(), KernelError> {
        match over_rule_set(self.v4.len(), self.v6.len(), self.peers.len()) {
            Some((map, entries)) => Err(KernelError::DoesNotFit {
                map,
                entries,
                capacity: RULE_SET_CAPACITY,
            }),
            None => Ok(()),
        }
    }
}

/// The set a rule class belongs to, and its class id (`None`: no set of this layout).
fn split_rule_class(rule_class: u32) -> Option<(usize, u32)> {
    let set = (rule_class / MAX_CLASSES) as usize;
    (set < RULE_SETS as usize).then_some((set, rule_class % MAX_CLASSES))
}

/// `class` in `set`, whichever set it was in before.
fn rule_class(set: usize, class: u32) -> u32 {
    class % MAX_CLASSES + set as u32 * MAX_CLASSES
}

fn with_set<const N: usize>(data: &[u8; N], set: usize) -> [u8; N] {
    let class = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
    let mut out = *data;
    out[..4].copy_from_slice(&rule_class(set, class).to_ne_bytes());
    out
}

fn peer_with_set(key: &RawPeerKey, set: usize) -> RawPeerKey {
    RawPeerKey {
        class_id: rule_class(set, key.class_id),
        ..*key
    }
}

impl Kernel {
    /// Writes the differences between the maps and `desired`. Cgroups are written in place,
    /// each entry whole. The policy's entries are written to the rule set that is not live,
    /// which then becomes live in one update of `settings` (`ebpf/abi.h`): the kernel sees the
    /// old rules or the new, never half, and a set that does not fit is refused before anything
    /// is written. Without `prune` nothing is removed: for a view known to be incomplete (a
    /// restarted agent that has not listed the node's pods yet must not forget the pods its
    /// predecessor mapped).
    pub fn sync(&mut self, desired: &Desired, prune: bool) -> Result<SyncReport, KernelError> {
        let mut report = SyncReport::default();
        let old = self.settings.get(&0, 0).map_err(map_error("settings"))?;
        let live = usize::from(old.flags & SETTING_RULE_SET_B != 0);
        let mut sets = self.read_rule_sets()?;
        let mut target = RuleSet::from_desired(desired);
        if !prune {
            target.keep_missing_from(&sets[live]);
        }
        target.check_fits()?;
        let swap = target != sets[live];
        let now_live = if swap { 1 - live } else { live };
        if swap {
            let spare = std::mem::take(&mut sets[now_live]);
            self.write_rule_set(now_live, &spare, &target, &mut report)?;
        }

        let current: HashMap<u64, RawOwner> = self
            .cgroup_classes
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_error("cgroup_classes"))?;
        let mut cgroups_changed = false;
        for (id, (class, tenant_id)) in &desired.cgroups {
            let owner = RawOwner {
                class_id: *class as u32,
                pad: 0,
                tenant_id: *tenant_id,
            };
            if current.get(id) != Some(&owner) {
                self.cgroup_classes
                    .insert(id, owner, 0)
                    .map_err(map_error("cgroup_classes"))?;
                report.written += 1;
                cgroups_changed = true;
            }
        }
        for id in current
            .keys()
            .filter(|id| prune && !desired.cgroups.contains_key(id))
        {
            self.cgroup_classes
                .remove(id)
                .map_err(map_error("cgroup_classes"))?;
            report.removed += 1;
            cgroups_changed = true;
        }
        report.entries.cgroup_classes = entries_after(&current, &desired.cgroups, prune);

        // After the cgroup map and the new rule set are written, never before: a program that
        // reads the new generation then walks the new map, one that reads the new set finds
        // it whole.
        let mut flags = if desired.dry_run { SETTING_DRY_RUN } else { 0 };
        if now_live == 1 {
            flags |= SETTING_RULE_SET_B;
        }
        let new = RawSettings {
            flags,
            generation: old.generation.wrapping_add(u32::from(cgroups_changed)),
        };
        if new != old {
            self.settings
                .set(0, new, 0)
                .map_err(map_error("settings"))?;
            report.written += 1;
        }
        report.swapped = swap;
        report.entries.tenant_peers = target.peers.len();
        report.entries.v4_rules = target.v4.len();
        report.entries.v6_rules = target.v6.len();
        Ok(report)
    }

    /// Both rule sets as the maps hold them.
    fn read_rule_sets(&self) -> Result<[RuleSet; 2], KernelError> {
        let mut sets = [RuleSet::default(), RuleSet::default()];
        let [v4_first, v4_second] = read_trie(&self.v4_rules, "v4_rules")?;
        let [v6_first, v6_second] = read_trie(&self.v6_rules, "v6_rules")?;
        (sets[0].v4, sets[1].v4) = (v4_first, v4_second);
        (sets[0].v6, sets[1].v6) = (v6_first, v6_second);
        for item in self.tenant_peers.iter() {
            let (key, rule) = item.map_err(map_error("tenant_peers"))?;
            if let Some((set, _)) = split_rule_class(key.class_id) {
                sets[set].peers.insert(peer_with_set(&key, 0), rule);
            }
        }
        for rule_class in 0..MAX_CLASSES * RULE_SETS {
            let flags = self
                .class_flags
                .get(&rule_class, 0)
                .map_err(map_error("class_flags"))?;
            if let Some((set, class)) = split_rule_class(rule_class) {
                sets[set].class_flags[class as usize] = flags;
            }
        }
        Ok(sets)
    }

    /// Makes rule set `set` (not live) equal to `target`: removals first, then writes, as
    /// no program reads it.
    fn write_rule_set(
        &mut self,
        set: usize,
        current: &RuleSet,
        target: &RuleSet,
        report: &mut SyncReport,
    ) -> Result<(), KernelError> {
        write_trie(
            &mut self.v4_rules,
            set,
            &current.v4,
            &target.v4,
            "v4_rules",
            report,
        )?;
        write_trie(
            &mut self.v6_rules,
            set,
            &current.v6,
            &target.v6,
            "v6_rules",
            report,
        )?;
        for key in current
            .peers
            .keys()
            .filter(|k| !target.peers.contains_key(k))
        {
            self.tenant_peers
                .remove(&peer_with_set(key, set))
                .map_err(map_error("tenant_peers"))?;
            report.removed += 1;
        }
        for (key, rule) in &target.peers {
            if current.peers.get(key) != Some(rule) {
                self.tenant_peers
                    .insert(peer_with_set(key, set), rule, 0)
                    .map_err(map_error("tenant_peers"))?;
                report.written += 1;
            }
        }
        for (class, (want, have)) in target
            .class_flags
            .iter()
            .zip(&current.class_flags)
            .enumerate()
        {
            if want != have {
                self.class_flags
                    .set(rule_class(set, class as u32), *want, 0)
                    .map_err(map_error("class_flags"))?;
                report.written += 1;
            }
        }
        Ok(())
    }
}

impl From<&Entry> for RawRule {
    fn from(entry: &Entry) -> Self {
        let mut raw = RawRule {
            flags: entry.flags,
            count: entry.ranges.len().min(MAX_PORT_RANGES as usize) as u32,
            ranges: [RawPortRange::default(); MAX_PORT_RANGES as usize],
        };
        for (slot, range) in raw.ranges.iter_mut().zip(&entry.ranges) {
            let PortRange {
                protocol,
                first,
                last,
            } = *range;
            *slot = RawPortRange {
                first,
                last,
                protocol,
                pad: [0; 3],
            };
        }
        raw
    }
}

impl RawPeerKey {
    pub fn new(class: ClassId, tenant_id: u64, ip: &IpAddr) -> Self {
        let mut addr = [0u32; 4];
        let family = match ip {
            IpAddr::V4(v4) => {
                addr[0] = u32::from_ne_bytes(v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                for (slot, chunk) in addr.iter_mut().zip(v6.octets().chunks(4)) {
                    *slot = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                6
            }
        };
        RawPeerKey {
            tenant_id,
            class_id: class as u32,
            family,
            addr,
        }
    }
}

fn trie_data<const N: usize>(class: u32, addr: &[u8]) -> [u8; N] {
    let mut data = [0u8; N];
    data[..4].copy_from_slice(&class.to_ne_bytes());
    data[4..].copy_from_slice(addr);
    data
}

/// A trie's entries by rule set, keyed by class id alone.
fn read_trie<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], RawRule>,
    name: &'static str,
) -> Result<[TrieEntries<[u8; N]>; 2], KernelError>
where
    [u8; N]: aya::Pod,
{
    let mut sets = [HashMap::new(), HashMap::new()];
    for item in trie.iter() {
        let (key, rule) = item.map_err(map_error(name))?;
        let data = key.data();
        let class = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
        if let Some((set, _)) = split_rule_class(class) {
            sets[set].insert((key.prefix_len(), with_set(&data, 0)), rule);
        }
    }
    Ok(sets)
}

fn write_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], RawRule>,
    set: usize,
    current: &TrieEntries<[u8; N]>,
    target: &TrieEntries<[u8; N]>,
    name: &'static str,
    report: &mut SyncReport,
) -> Result<(), KernelError>
where
    [u8; N]: aya::Pod,
{
    for (prefix, data) in current.keys().filter(|k| !target.contains_key(k)) {
        trie.remove(&Key::new(*prefix, with_set(data, set)))
            .map_err(map_error(name))?;
        report.removed += 1;
    }
    for (key, value) in target {
        if current.get(key) != Some(value) {
            trie.insert(&Key::new(key.0, with_set(&key.1, set)), value, 0)
                .map_err(map_error(name))?;
            report.written += 1;
        }
    }
    Ok(())
}

/// How many entries a map holds after a sync from `current` towards `desired`: the desired
/// ones, plus the others when nothing was pruned.
fn entries_after<K: std::hash::Hash + Eq, A, B>(
    current: &HashMap<K, A>,
    desired: &HashMap<K, B>,
    prune: bool,
) -> usize {
    let kept = if prune {
        0
    } else {
        current.keys().filter(|k| !desired.contains_key(*k)).count()
    };
    desired.len() + kept
}
