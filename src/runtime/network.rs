//! Networking without iptables: loopback inside a private namespace, and published ports as
//! userspace proxies whose container-side connections are opened from a thread that joined the
//! container's network namespace.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use nix::sched::{CloneFlags, setns};

use super::container::{PortMapping, Protocol};

/// Runs `f` on a new thread that has joined the network namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let ns = File::open(netns)?;
    thread::spawn(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("network namespace helper panicked"))?
}

/// Brings `lo` up in the namespace (a new network namespace starts with it down).
pub fn loopback_up(netns: &Path) -> io::Result<()> {
    in_netns(netns, || {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        set_iface_up(&sock, "lo")
    })
}

nix::ioctl_readwrite_bad!(siocgifflags, libc_consts::SIOCGIFFLAGS, IfReq);
nix::ioctl_write_ptr_bad!(siocsifflags, libc_consts::SIOCSIFFLAGS, IfReq);

mod libc_consts {
    pub const SIOCGIFFLAGS: u64 = 0x8913;
    pub const SIOCSIFFLAGS: u64 = 0x8914;
    pub const IFF_UP: i16 = 0x1;
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

fn set_iface_up(sock: &impl AsFd, name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut req = IfReq { name: [0; 16], flags: 0, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: `req` is a properly sized, initialised ifreq for the lifetime of both calls.
    unsafe { siocgifflags(fd, &mut req) }.map_err(io::Error::from)?;
    req.flags |= libc_consts::IFF_UP;
    // SAFETY: as above.
    unsafe { siocsifflags(fd, &req) }.map_err(io::Error::from)?;
    Ok(())
}

/// Binds the host side of every TCP mapping; returns listeners with the ports actually bound.
pub fn bind_ports(ports: &[PortMapping]) -> io::Result<Vec<(PortMapping, TcpListener)>> {
    let mut out = Vec::new();
    for p in ports {
        if p.protocol != Protocol::Tcp {
            continue;
        }
        let ip: std::net::IpAddr = if p.host_ip.is_empty() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            p.host_ip.parse().map_err(|_| io::Error::other(format!("invalid host IP {:?}", p.host_ip)))?
        };
        let listener = TcpListener::bind(SocketAddr::new(ip, p.host_port))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot publish port {}:{}: {e}", ip, p.host_port)))?;
        let bound = listener.local_addr()?.port();
        out.push((PortMapping { host_port: bound, ..p.clone() }, listener));
    }
    Ok(out)
}

/// Serves published ports: every accepted connection is paired with one opened to
/// 127.0.0.1:<container port> inside the container's network namespace.
pub fn serve(listeners: Vec<(PortMapping, TcpListener)>, netns: &Path) -> io::Result<()> {
    if listeners.is_empty() {
        return Ok(());
    }
    // One thread stays in the container's namespace and opens connections on request.
    let (req_tx, req_rx) = mpsc::channel::<(u16, mpsc::Sender<io::Result<TcpStream>>)>();
    let ns = File::open(netns)?;
    thread::Builder::new().name("netns-dialer".into()).stack_size(64 * 1024).spawn(move || {
        if let Err(e) = setns(ns.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot join the container's network namespace");
            return;
        }
        for (port, reply) in req_rx {
            let _ = reply.send(TcpStream::connect((Ipv4Addr::LOCALHOST, port)));
        }
    })?;
    for (mapping, listener) in listeners {
        let req_tx = req_tx.clone();
        thread::Builder::new().name(format!("port-{}", mapping.host_port)).stack_size(64 * 1024).spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (tx, rx) = mpsc::channel();
                if req_tx.send((mapping.container_port, tx)).is_err() {
                    return;
                }
                match rx.recv() {
                    Ok(Ok(upstream)) => splice_pair(client, upstream),
                    Ok(Err(e)) => tracing::debug!(port = mapping.container_port, error = %e, "container port refused"),
                    Err(_) => return,
                }
            }
        })?;
    }
    Ok(())
}

fn splice_pair(a: TcpStream, b: TcpStream) {
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let _ = thread::Builder::new().stack_size(64 * 1024).spawn(copy(a, b2));
    let _ = thread::Builder::new().stack_size(64 * 1024).spawn(copy(b, a2));
}
