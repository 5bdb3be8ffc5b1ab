//! Test and diagnosis tool for the node agent: serves or probes TCP and UDP endpoints inside a
//! network namespace, optionally from a given cgroup, and reports what the kernel answered.
//!
//! It sends nothing unless the namespace it entered is isolated: only `lo`, and no default
//! route. The metadata tests run their fake metadata server this way, never on the host.
//!
//!   hubguard-netprobe serve --netns PATH ENDPOINT...
//!   hubguard-netprobe probe --netns PATH [--cgroup DIR] [--uid N] PROBE...
//!   hubguard-netprobe probe --netns pod PROBE...   (inside a pod of the test node)
//!   hubguard-netprobe repeat --netns PATH|pod [--count N] [--every MS] [--for SECONDS] PROBE
//!                                         (every 20 ms unless told, at most SECONDS; a tally)
//!   hubguard-netprobe connect-rate --netns PATH [--cgroup DIR] [--count N] tcp:ADDR:PORT
//!   hubguard-netprobe socket-rate --netns PATH [--cgroup DIR] [--count N]
//!
//! ENDPOINT is `tcp:ADDR:PORT`, `udp:ADDR:PORT` or `udplite:ADDR:PORT` (IPv6 in brackets).
//! PROBE is the same (UDP-Lite through a connected socket, as no connect hook sees it), or
//! `udpc:ADDR:PORT` for a connected UDP socket, `route:ADDR:PORT` for a UDP connect() that
//! sends nothing (how programs probe routes; `ok` when connect() succeeded), `ping:ADDR` for
//! an ICMP echo through an unprivileged ICMP datagram socket, `raw:ADDR` for one through a raw
//! socket, `lsrr:HOP:ADDR:PORT` / `srh:[HOP]:[ADDR]:PORT` for a UDP datagram to ADDR
//! source-routed through HOP (an IPv4 loose source route; an IPv6 segment routing header;
//! `EPERM` also when setting the route was refused), `family:packet` / `family:vsock` for a
//! packet or vsock socket made and closed at once (nothing is sent).
//! A probe prints `PROBE ok` when the listener (or the kernel, for echoes) answered, `PROBE EPERM` when the
//! kernel refused, or `PROBE error: ...`. With `--uid N` the probes run as that uid with no
//! capabilities, after the namespace's `net.ipv4.ping_group_range` (a per-namespace sysctl of
//! the isolated namespace, never the host's) admits every group, as container runtimes set it.
//! Inside a test node's pod (`--netns pod`) ADDR may also be a name (`tcp:hub.tess-private:8081`),
//! resolved through the pod's DNS after the namespace is known to be the pod's; elsewhere names
//! are refused, so nothing is ever resolved from the host.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hubguard-netprobe: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let command = args
        .next()
        .ok_or("usage: hubguard-netprobe serve|probe --netns PATH ...")?;
    let mut netns = None;
    let mut cgroup = None;
    let mut spec_texts = Vec::new();
    let mut count: u32 = 10_000;
    let mut uid: Option<u32> = None;
    let mut every = Duration::from_millis(20);
    let mut bound = Duration::from_secs(600);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--uid" => {
                uid = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or("--uid needs a non-zero uid")?,
                )
            }
            "--count" => {
                count = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or("--count needs a number from 1 to 1000000")?
            }
            "--every" => {
                every = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n <= 10_000)
                    .map(Duration::from_millis)
                    .ok_or("--every needs milliseconds from 0 to 10000")?
            }
            "--for" => {
                bound = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=600).contains(n))
                    .map(Duration::from_secs)
                    .ok_or("--for needs seconds from 1 to 600")?
            }
            "--netns" => netns = Some(args.next().ok_or("--netns needs a path")?),
            "--cgroup" => cgroup = Some(args.next().ok_or("--cgroup needs a directory")?),
            _ => spec_texts.push(arg),
        }
    }
    let netns =
        netns.ok_or("--netns is required: this tool only sends inside an isolated namespace")?;
    // The cgroup first: entering the namespace does not change /sys, but the order keeps
    // the probe under the cgroup for every socket it opens.
    if let Some(dir) = &cgroup {
        std::fs::write(
            format!("{dir}/cgroup.procs"),
            std::process::id().to_string(),
        )
        .map_err(|e| format!("joining cgroup {dir}: {e}"))?;
    }
    if netns == "pod" {
        // Inside a pod of the test node (hubguard-cluster): the pod's namespace has its veth and a
        // default route, both ending in the node's namespace, which the harness asserted has no
        // link to the host before starting anything. From in here that cannot be checked again.
        if !std::path::Path::new("/hubguard-test-node").exists() {
            return Err("--netns pod is for the test node's probe image only".into());
        }
    } else {
        enter_netns(&netns)?;
        assert_isolated()?;
    }
    let names_allowed = netns == "pod";
    let specs = spec_texts
        .iter()
        .map(|text| parse_spec(text, names_allowed))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(uid) = uid {
        become_unprivileged(uid)?;
    }
    match command.as_str() {
        "serve" => serve(
            &specs
                .iter()
                .map(|(kind, addr, _)| (kind.clone(), *addr))
                .collect::<Vec<_>>(),
        ),
        "probe" => {
            for (kind, addr, text) in &specs {
                println!("{text} {}", probe(kind, *addr));
            }
            Ok(())
        }
        "repeat" => match specs.as_slice() {
            [(kind, addr, _)] => {
                repeat(kind, *addr, count, every, bound);
                Ok(())
            }
            _ => Err("repeat takes one probe".into()),
        },
        "connect-rate" => match specs.as_slice() {
            [(kind, addr, _)] if kind == "tcp" => connect_rate(*addr, count),
            _ => Err("connect-rate takes one tcp:ADDR:PORT".into()),
        },
        "socket-rate" => socket_rate(count),
        other => Err(format!(
            "unknown command '{other}': serve, probe, connect-rate or socket-rate"
        )),
    }
}

/// Lets every group open ICMP echo sockets in this (isolated) namespace, as containerd 2 and
/// CRI-O do in every pod, then drops to `uid` with no capabilities.
fn become_unprivileged(uid: u32) -> Result<(), String> {
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .map_err(|e| format!("net.ipv4.ping_group_range in the test namespace: {e}"))?;
    // SAFETY: plain credential syscalls on this single-threaded process; a uid change from
    // root clears the capability sets.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(uid) != 0
            || libc::setuid(uid) != 0
    };
    if failed {
        return Err(format!(
            "dropping to uid {uid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn parse_spec(text: &str, names_allowed: bool) -> Result<(String, SocketAddr, String), String> {
    let (kind, addr) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not KIND:ADDR:PORT"))?;
    if kind == "lsrr" || kind == "srh" {
        // The hop goes into the kind, so that a probe stays (kind, address).
        let (hop, rest) = if kind == "srh" {
            addr.split_once("]:")
                .map(|(hop, rest)| (hop.trim_start_matches('['), rest))
        } else {
            addr.split_once(':')
        }
        .ok_or_else(|| format!("'{text}' is not {kind}:HOP:ADDR:PORT"))?;
        let hop: IpAddr = hop.parse().map_err(|e| format!("'{text}': the hop: {e}"))?;
        let addr: SocketAddr = rest.parse().map_err(|e| format!("'{text}': {e}"))?;
        if hop.is_ipv4() != addr.is_ipv4() || hop.is_ipv4() != (kind == "lsrr") {
            return Err(format!("'{text}': lsrr routes IPv4, srh IPv6"));
        }
        return Ok((format!("{kind}/{hop}"), addr, text.to_string()));
    }
    if kind == "family" {
        // Only a socket is made: the address is a placeholder.
        if addr != "packet" && addr != "vsock" {
            return Err(format!("'{text}': family:packet or family:vsock"));
        }
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        return Ok((format!("family/{addr}"), nowhere, text.to_string()));
    }
    let addr = match kind {
        "tcp" | "udp" | "udpc" | "udplite" | "route" => match addr.parse() {
            Ok(addr) => addr,
            Err(_) if names_allowed && !addr.starts_with('[') => resolve(text, addr)?,
            Err(e) => return Err(format!("'{text}': {e} (IPv6 goes in brackets)")),
        },
        "ping" | "raw" => SocketAddr::new(
            addr.parse::<IpAddr>()
                .map_err(|e| format!("'{text}': {e}"))?,
            0,
        ),
        _ => {
            return Err(format!(
            "'{text}': kind must be tcp, udp, udpc, udplite, route, ping, raw, lsrr, srh or family"
        ))
        }
    };
    Ok((kind.to_string(), addr, text.to_string()))
}

/// A `NAME:PORT` through the pod's resolver (cluster DNS); its first IPv4 address.
fn resolve(text: &str, name_and_port: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs = name_and_port
        .to_socket_addrs()
        .map_err(|e| format!("'{text}': resolving: {e}"))?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("'{text}': the name has no address"))
}

fn enter_netns(path: &str) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
    // SAFETY: a valid namespace fd; called before any thread is spawned.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Refuses to go on unless this namespace has only `lo` and no default route.
fn assert_isolated() -> Result<(), String> {
    let links = interface_names();
    if links != ["lo"] {
        return Err(format!(
            "refusing to send: the namespace has links {links:?}, not only lo"
        ));
    }
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    if v4
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
    {
        return Err("refusing to send: the namespace has an IPv4 default route".into());
    }
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let reject = 0x0200;
    let default_v6 = v6.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 10
            && f[0] == "00000000000000000000000000000000"
            && f[1] == "00"
            && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & reject == 0)
    });
    if default_v6 {
        return Err("refusing to send: the namespace has an IPv6 default route".into());
    }
    Ok(())
}

fn interface_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns a list terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut entry = list;
        while (*entry).if_index != 0 {
            names.push(
                std::ffi::CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

fn serve(specs: &[(String, SocketAddr)]) -> Result<(), String> {
    for (kind, addr) in specs {
        match kind.as_str() {
            "tcp" => {
                let listener = TcpListener::bind(addr).map_err(|e| format!("tcp {addr}: {e}"))?;
                // A deep accept queue and two acceptors, so that connect-rate measures the
                // client's connects and not SYNs dropped by a full queue.
                // SAFETY: listen(2) on a socket we own; it only resizes the queue.
                unsafe { libc::listen(listener.as_raw_fd(), 4096) };
                for _ in 0..2 {
                    let listener = listener
                        .try_clone()
                        .map_err(|e| format!("tcp {addr}: {e}"))?;
                    std::thread::spawn(move || {
                        for mut stream in listener.incoming().flatten() {
                            let _ = stream.write_all(b"hello\n");
                        }
                    });
                }
            }
            "udp" | "udplite" => {
                let socket = udp_socket(kind, *addr).map_err(|e| format!("{kind} {addr}: {e}"))?;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                });
            }
            other => return Err(format!("cannot serve {other}")),
        }
    }
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // Serve until stdin closes (the parent ends us by dropping the pipe) or until killed.
    let mut buf = [0u8; 64];
    while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    Ok(())
}

fn outcome(error: std::io::Error) -> String {
    if error.raw_os_error() == Some(libc::EPERM) {
        "EPERM".into()
    } else {
        format!("error: {error}")
    }
}

/// Probes `count` times, `every` apart, for at most `bound`, and prints how many ended each way
/// ("OUTCOME COUNT" lines): a gap in enforcement shows as a non-zero "ok". Bounded in count and
/// in time: a load loop never outlives its test.
fn repeat(kind: &str, addr: SocketAddr, count: u32, every: Duration, bound: Duration) {
    let mut tally = std::collections::BTreeMap::<String, u32>::new();
    let started = std::time::Instant::now();
    for _ in 0..count {
        *tally.entry(probe(kind, addr)).or_default() += 1;
        if started.elapsed() >= bound {
            break;
        }
        if !every.is_zero() {
            std::thread::sleep(every);
        }
    }
    for (outcome, n) in tally {
        println!("{outcome} {n}");
    }
}

fn probe(kind: &str, addr: SocketAddr) -> String {
    match kind {
        "tcp" => match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(mut stream) => {
                let mut buf = [0u8; 6];
                let _ = stream.set_read_timeout(Some(TIMEOUT));
                match stream.read_exact(&mut buf) {
                    Ok(()) if &buf == b"hello\n" => "ok".into(),
                    Ok(()) => "error: unexpected greeting".into(),
                    Err(e) => format!("error: no greeting: {e}"),
                }
            }
            Err(e) => outcome(e),
        },
        "udp" | "udpc" | "udplite" | "route" => {
            let socket = match udp_socket(kind, any_port_of_family(addr)) {
                Ok(s) => s,
                Err(e) => return format!("error: bind: {e}"),
            };
            let _ = socket.set_read_timeout(Some(TIMEOUT));
            if kind == "route" {
                return match socket.connect(addr) {
                    Ok(()) => "ok".into(),
                    Err(e) => outcome(e),
                };
            }
            let sent = if kind == "udpc" || kind == "udplite" {
                socket.connect(addr).and_then(|()| socket.send(b"probe"))
            } else {
                socket.send_to(b"probe", addr)
            };
            if let Err(e) = sent {
                return outcome(e);
            }
            let mut buf = [0u8; 16];
            match socket.recv(&mut buf) {
                Ok(5) if &buf[..5] == b"probe" => "ok".into(),
                Ok(_) => "error: unexpected reply".into(),
                Err(e) => format!("error: no reply: {e}"),
            }
        }
        "ping" | "raw" => echo(addr.ip(), kind == "raw"),
        "family/packet" => socket_of(libc::AF_PACKET, libc::SOCK_RAW),
        "family/vsock" => socket_of(libc::AF_VSOCK, libc::SOCK_STREAM),
        routed if routed.starts_with("lsrr/") || routed.starts_with("srh/") => {
            let hop = routed.split_once('/').and_then(|(_, hop)| hop.parse().ok());
            source_routed(hop.expect("parsed with the probe"), addr)
        }
        _ => unreachable!("kinds are checked when parsed"),
    }
}

/// A socket of another family than the inet ones, made and closed at once (nothing is sent):
/// `ok` when the kernel made it.
fn socket_of(family: libc::c_int, kind: libc::c_int) -> String {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned and closed below.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return outcome(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by socket(2), owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    "ok".into()
}

/// The unspecified address of `addr`'s family, any port: where a client socket binds.
fn any_port_of_family(addr: SocketAddr) -> SocketAddr {
    let any: IpAddr = if addr.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(any, 0)
}

/// A UDP socket bound to `addr`; for `udplite`, a UDP-Lite one: the same calls on another
/// protocol number, which std cannot create (socket2 can, without unsafe code).
fn udp_socket(kind: &str, addr: SocketAddr) -> std::io::Result<UdpSocket> {
    if kind != "udplite" {
        return UdpSocket::bind(addr);
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::from(libc::IPPROTO_UDPLITE)),
    )?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A UDP datagram to `addr` whose packet goes to `hop` first: an IPv4 loose source route
/// (IP_OPTIONS: NOP, LSRR, length 7, pointer 4, the hop), or an IPv6 segment routing header
/// (IPV6_RTHDR, which needs no privilege: type 4, segments [addr, hop], one left).
fn source_routed(hop: IpAddr, addr: SocketAddr) -> String {
    let socket = match UdpSocket::bind(any_port_of_family(addr)) {
        Ok(s) => s,
        Err(e) => return format!("error: bind: {e}"),
    };
    let _ = socket.set_read_timeout(Some(TIMEOUT));
    let (level, name, header) = match (hop, addr.ip()) {
        (IpAddr::V4(hop), IpAddr::V4(_)) => {
            let mut option = vec![1u8, 131, 7, 4];
            option.extend(hop.octets());
            (libc::IPPROTO_IP, libc::IP_OPTIONS, option)
        }
        (IpAddr::V6(hop), IpAddr::V6(destination)) => {
            let mut header = vec![0u8, 4, 4, 1, 1, 0, 0, 0];
            header.extend(destination.octets());
            header.extend(hop.octets());
            (libc::IPPROTO_IPV6, libc::IPV6_RTHDR, header)
        }
        _ => unreachable!("families are checked when parsed"),
    };
    // SAFETY: setsockopt with a buffer of the length given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            header.as_ptr().cast(),
            header.len() as libc::socklen_t,
        )
    };
    if set != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EPERM) {
            return "EPERM".into();
        }
        return format!("error: setting the route: {error}");
    }
    if let Err(e) = socket.send_to(b"probe", addr) {
        return outcome(e);
    }
    let mut buf = [0u8; 16];
    match socket.recv(&mut buf) {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: no reply: {e}"),
    }
}

/// The internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One ICMP echo to `addr`, through an ICMP datagram ("ping") socket or a raw socket; "ok"
/// when the echo reply comes back.
fn echo(addr: IpAddr, raw: bool) -> String {
    let (domain, protocol, request, reply) = match addr {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
    };
    let kind = if raw {
        libc::SOCK_RAW
    } else {
        libc::SOCK_DGRAM
    };
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return outcome(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut message = vec![request, 0, 0, 0, 0x68, 0x67, 0, 1];
    message.extend_from_slice(b"hubguard");
    let sum = checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    let sent = match addr {
        IpAddr::V4(v4) => {
            // SAFETY: a zeroed sockaddr_in is valid; the fields are set below.
            let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            to.sin_family = libc::AF_INET as libc::sa_family_t;
            to.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            // SAFETY: sendto with a buffer and address of the sizes given.
            unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            to.sin6_addr.s6_addr = v6.octets();
            // SAFETY: sendto with a buffer and address of the sizes given.
            unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    (&to as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if sent < 0 {
        return outcome(std::io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        // SAFETY: recv into a buffer of the size given.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return format!("error: no reply: {}", std::io::Error::last_os_error());
        }
        let packet = &buf[..n as usize];
        // A raw IPv4 socket sees the IP header (and, on lo, our own request too).
        let icmp = if raw && addr.is_ipv4() {
            packet.get(usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4..)
        } else {
            Some(packet)
        };
        if icmp.and_then(|i| i.first()) == Some(&reply) {
            return "ok".into();
        }
    }
    "error: no reply".into()
}

/// `count` rounds of socket + close (a TCP socket): what the socket-creation hook costs the
/// sockets it lets through.
fn socket_rate(count: u32) -> Result<(), String> {
    let cpu_before = cpu_seconds();
    for i in 0..count {
        // SAFETY: socket(2) with constant arguments; closed at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!("socket {i}: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd we own.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "sockets={count} cpu_ns_per_socket={:.0}",
        cpu * 1e9 / f64::from(count)
    );
    Ok(())
}

/// `count` rounds of socket + connect + close, timed: what every pod pays per connection for
/// whatever filters egress. (An RST close instead would measure the RST path, much slower;
/// the namespace should let TIME_WAIT ports be reused: net.ipv4.tcp_tw_reuse=1.)
/// The process's CPU time (user + system) also counts the loopback handshake the kernel does
/// in its context, and not the time other processes on a noisy machine take.
fn connect_rate(addr: SocketAddr, count: u32) -> Result<(), String> {
    let cpu_before = cpu_seconds();
    let start = std::time::Instant::now();
    for i in 0..count {
        TcpStream::connect(addr).map_err(|e| format!("connect {i}: {e}"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "connects={count} seconds={seconds:.6} cpu_ns_per_connect={:.0} per_second={:.0}",
        cpu * 1e9 / f64::from(count),
        f64::from(count) / seconds
    );
    Ok(())
}

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
