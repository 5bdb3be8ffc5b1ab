//! What the kernel reports: its per-CPU counters and the denial events of the ring buffer.

use super::*;

impl Kernel {
    /// Denials counted by the kernel since the maps were created, per class and reason
    /// (reason 0: events lost because the ring buffer was full).
    pub fn denial_counts(&self) -> Result<Vec<(ClassId, Reason, u64)>, KernelError> {
        let mut out = Vec::new();
        for class in 0..MAX_CLASSES {
            for reason in Reason::ALL {
                let values = self
                    .denials
                    .get(&(class * REASONS + reason as u32), 0)
                    .map_err(map_error("denials"))?;
                let total: u64 = values.iter().sum();
                if total > 0 {
                    out.push((ClassId::from_raw(class), reason, total));
                }
            }
        }
        Ok(out)
    }

    /// The ring buffer of denial events; once.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

/// Decodes a `struct denial` from the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub cgroup_id: u64,
    pub class: ClassId,
    pub pid: u32,
    pub destination: IpAddr,
    pub port: u16,
    pub protocol: u8,
    pub reason: Reason,
    pub dry_run: bool,
    /// The packet layer refused what the socket hooks let through: a way around them tried.
    pub packet_layer: bool,
}

impl Denial {
    /// `None` for a record too short or with a reason this agent does not know.
    pub fn parse(bytes: &[u8]) -> Option<Denial> {
        let raw = RawDenial::read(bytes)?;
        let mut addr = [0u8; 16];
        for (chunk, word) in addr.chunks_mut(4).zip(raw.addr) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let destination = if raw.family == 4 {
            IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
        } else {
            IpAddr::from(addr)
        };
        Some(Denial {
            cgroup_id: raw.cgroup_id,
            class: ClassId::from_raw(raw.class_id),
            pid: raw.pid,
            destination,
            port: raw.port,
            protocol: raw.protocol,
            reason: Reason::from_raw(u32::from(raw.reason))?,
            dry_run: raw.dry_run != 0,
            packet_layer: u32::from(raw.layer) == LAYER_PACKET,
        })
    }
}
