//! Keeping the maps equal to what userspace wants: the policy's entries, the cgroups' owners,
//! the same-tenant peers and the classes' flags, written as differences.

use super::*;

impl Kernel {
    /// Writes the differences between the maps and `desired`: new and changed entries first,
    /// then removals, so a destination being re-keyed is never briefly absent. Without
    /// `prune` nothing is removed: for a view known to be incomplete (a restarted agent that
    /// has not listed the node's pods yet must not forget the pods its predecessor mapped).
    pub fn sync(&mut self, desired: &Desired, prune: bool) -> Result<SyncReport, KernelError> {
        let mut report = SyncReport::default();
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

        // After the cgroup map changed, never before: a program that reads the new generation
        // then walks the new map.
        let old = self.settings.get(&0, 0).map_err(map_error("settings"))?;
        let new = RawSettings {
            flags: if desired.dry_run { SETTING_DRY_RUN } else { 0 },
            generation: old.generation.wrapping_add(u32::from(cgroups_changed)),
        };
        if new != old {
            self.settings
                .set(0, new, 0)
                .map_err(map_error("settings"))?;
            report.written += 1;
        }

        let mut v4 = HashMap::new();
        let mut v6 = HashMap::new();
        for ((class, net), entry) in desired.rules.iter() {
            let raw = RawRule::from(entry);
            match net {
                IpNet::V4(n) => {
                    v4.insert(
                        (
                            n.prefix_len() as u32 + 32,
                            trie_data(*class, &n.addr().octets()),
                        ),
                        raw,
                    );
                }
                IpNet::V6(n) => {
                    v6.insert(
                        (
                            n.prefix_len() as u32 + 32,
                            trie_data(*class, &n.addr().octets()),
                        ),
                        raw,
                    );
                }
            }
        }
        for class in 0..MAX_CLASSES {
            let want = desired
                .class_flags
                .get(&ClassId::from_raw(class))
                .copied()
                .filter(|_| ClassId::from_raw(class) as u32 == class)
                .unwrap_or(0);
            let have = self
                .class_flags
                .get(&class, 0)
                .map_err(map_error("class_flags"))?;
            if want != have {
                self.class_flags
                    .set(class, want, 0)
                    .map_err(map_error("class_flags"))?;
                report.written += 1;
            }
        }
        let peers: HashMap<RawPeerKey, RawRule> = desired
            .peers
            .iter()
            .map(|((class, tenant, ip), entry)| {
                (RawPeerKey::new(*class, *tenant, ip), RawRule::from(entry))
            })
            .collect();
        let current_peers: HashMap<RawPeerKey, RawRule> = self
            .tenant_peers
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_error("tenant_peers"))?;
        for (key, rule) in &peers {
            if current_peers.get(key) != Some(rule) {
                self.tenant_peers
                    .insert(key, rule, 0)
                    .map_err(map_error("tenant_peers"))?;
                report.written += 1;
            }
        }
        for key in current_peers
            .keys()
            .filter(|k| prune && !peers.contains_key(k))
        {
            self.tenant_peers
                .remove(key)
                .map_err(map_error("tenant_peers"))?;
            report.removed += 1;
        }
        report.entries.tenant_peers = entries_after(&current_peers, &peers, prune);
        report.entries.v4_rules =
            sync_trie(&mut self.v4_rules, &v4, "v4_rules", prune, &mut report)?;
        report.entries.v6_rules =
            sync_trie(&mut self.v6_rules, &v6, "v6_rules", prune, &mut report)?;
        Ok(report)
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

fn trie_data<const N: usize>(class: ClassId, addr: &[u8]) -> [u8; N] {
    let mut data = [0u8; N];
    data[..4].copy_from_slice(&(class as u32).to_ne_bytes());
    data[4..].copy_from_slice(addr);
    data
}

fn sync_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], RawRule>,
    desired: &HashMap<(u32, [u8; N]), RawRule>,
    name: &'static str,
    prune: bool,
    report: &mut SyncReport,
) -> Result<usize, KernelError>
where
    [u8; N]: aya::Pod,
{
    let current: HashMap<(u32, [u8; N]), RawRule> = trie
        .iter()
        .map(|item| item.map(|(k, v)| ((k.prefix_len(), k.data()), v)))
        .collect::<Result<_, _>>()
        .map_err(map_error(name))?;
    for (key, value) in desired {
        if current.get(key) != Some(value) {
            trie.insert(&Key::new(key.0, key.1), value, 0)
                .map_err(map_error(name))?;
            report.written += 1;
        }
    }
    for key in current.keys().filter(|k| prune && !desired.contains_key(k)) {
        trie.remove(&Key::new(key.0, key.1))
            .map_err(map_error(name))?;
        report.removed += 1;
    }
    Ok(entries_after(&current, desired, prune))
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
