//! Test and diagnosis tool for the node agent: serves or probes TCP and UDP endpoints inside a
//! network namespace, optionally from a given cgroup, and reports what the kernel answered.
//!
//! It sends nothing unless the namespace it entered is isolated: only `lo`, and no default
//! route. The metadata tests run their fake metadata server this way, never on the host.
//!
//!   hubguard-netprobe serve --netns PATH ENDPOINT...
//!   hubguard-netprobe probe --netns PATH [--cgroup DIR] PROBE...
//!   hubguard-netprobe connect-rate --netns PATH [--cgroup DIR] [--count N] tcp:ADDR:PORT
//!
//! ENDPOINT is `tcp:ADDR:PORT` or `udp:ADDR:PORT` (IPv6 in brackets). PROBE is the same, or
//! `udpc:ADDR:PORT` for a connected UDP socket. A probe prints `PROBE ok` when the listener
//! answered, `PROBE EPERM` when the kernel refused, or `PROBE error: ...`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
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
    let mut specs = Vec::new();
    let mut count: u32 = 10_000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => {
                count = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or("--count needs a number from 1 to 1000000")?
            }
            "--netns" => netns = Some(args.next().ok_or("--netns needs a path")?),
            "--cgroup" => cgroup = Some(args.next().ok_or("--cgroup needs a directory")?),
            _ => specs.push(parse_spec(&arg)?),
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
    enter_netns(&netns)?;
    assert_isolated()?;
    match command.as_str() {
        "serve" => serve(&specs),
        "probe" => {
            for (kind, addr) in &specs {
                println!("{kind}:{addr} {}", probe(kind, *addr));
            }
            Ok(())
        }
        "connect-rate" => match specs.as_slice() {
            [(kind, addr)] if kind == "tcp" => connect_rate(*addr, count),
            _ => Err("connect-rate takes one tcp:ADDR:PORT".into()),
        },
        other => Err(format!(
            "unknown command '{other}': serve, probe or connect-rate"
        )),
    }
}

fn parse_spec(text: &str) -> Result<(String, SocketAddr), String> {
    let (kind, addr) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not KIND:ADDR:PORT"))?;
    if !matches!(kind, "tcp" | "udp" | "udpc") {
        return Err(format!("'{text}': kind must be tcp, udp or udpc"));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("'{text}': {e} (IPv6 goes in brackets)"))?;
    Ok((kind.to_string(), addr))
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
            "udp" => {
                let socket = UdpSocket::bind(addr).map_err(|e| format!("udp {addr}: {e}"))?;
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
        "udp" | "udpc" => {
            let local: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .expect("literal");
            let socket = match UdpSocket::bind(local) {
                Ok(s) => s,
                Err(e) => return format!("error: bind: {e}"),
            };
            let _ = socket.set_read_timeout(Some(TIMEOUT));
            let sent = if kind == "udpc" {
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
        _ => unreachable!("kinds are checked when parsed"),
    }
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
