//! Networking without iptables: loopback inside a private namespace, and published ports as
//! userspace proxies whose container-side connections are opened from a thread that joined the
//! container's network namespace.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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

/// An HTTP GET of `path` on 127.0.0.1:`port` inside the network namespace at `netns`; returns
/// the response's status code. For health checks of services that publish no ports.
pub fn http_get_in(netns: &Path, port: u16, path: &str, timeout: Duration) -> io::Result<u16> {
    use std::io::{BufRead, BufReader, Write};
    let stream =
        in_netns(netns, move || TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = &stream;
    write!(
        writer,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: lifeboat-drill\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(&stream);
    let mut status = String::new();
    // A status line is short; a service sending an endless one gets 8 KiB read.
    std::io::Read::take(&mut reader, 8192).read_line(&mut status)?;
    // "HTTP/1.1 200 OK"
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {status:?}")))?;
    // The whole answer is read (up to 16 MiB), as a client would: a probe that hung up after
    // the status line would not have made the service read its page (a drill records what
    // the service read to answer).
    let _ = io::copy(&mut std::io::Read::take(reader, 16 << 20), &mut io::sink());
    Ok(code)
}

/// Brings `lo` up in the namespace (a new network namespace starts with it down).
pub fn loopback_up(netns: &Path) -> io::Result<()> {
    in_netns(netns, lo_up)
}

/// Brings loopback up in this thread's network namespace.
fn lo_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    set_iface_up(&sock, "lo")
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

/// Where named networks' namespaces are kept (bind mounts of the namespace files).
pub fn networks_dir(run_root: &Path) -> std::path::PathBuf {
    run_root.join("networks")
}

/// The namespace file of the named network `name`, made with loopback up if it is not there
/// (first use, or the first start after a reboot emptied the run root).
pub fn named(run_root: &Path, name: &str) -> io::Result<std::path::PathBuf> {
    super::names::validate_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dir = networks_dir(run_root);
    std::fs::create_dir_all(&dir)?;
    let _made_one_at_a_time = crate::fsutil::FileLock::exclusive(&dir.join(".lock"))?;
    let path = dir.join(name);
    if is_namespace(&path) {
        return Ok(path);
    }
    // A file left by an attempt that died half-way is made again.
    let _ = std::fs::remove_file(&path);
    File::create(&path)?;
    let target = path.clone();
    let made = thread::spawn(move || -> io::Result<()> {
        // This thread alone moves into the new namespace; it ends there.
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        // Loopback first: a namespace is only ever named once it is whole.
        lo_up()?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        nix::mount::mount(Some(own.as_str()), &target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .map_err(io::Error::from)
    })
    .join()
    .map_err(|_| io::Error::other("network namespace helper panicked"))?;
    if let Err(e) = made {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&path);
        return Err(io::Error::new(e.kind(), format!("cannot make network {name}: {e}")));
    }
    Ok(path)
}

/// Removes the named network `name`'s name; containers still in it keep it until they end.
pub fn remove_named(run_root: &Path, name: &str) -> io::Result<()> {
    super::names::validate_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dir = networks_dir(run_root);
    let path = dir.join(name);
    if !path.exists() {
        return Ok(());
    }
    let _one_at_a_time = crate::fsutil::FileLock::exclusive(&dir.join(".lock"))?;
    if is_namespace(&path) {
        nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a namespace file (a bind mount of one), not the empty file under it.
fn is_namespace(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type == NSFS_MAGIC)
}

/// A bound host-side socket of a published port.
pub enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the host side of every mapping; returns sockets with the ports actually bound.
pub fn bind_ports(ports: &[PortMapping]) -> io::Result<Vec<(PortMapping, Listener)>> {
    let mut out = Vec::new();
    for p in ports {
        let ip: std::net::IpAddr = if p.host_ip.is_empty() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            p.host_ip.parse().map_err(|_| io::Error::other(format!("invalid host IP {:?}", p.host_ip)))?
        };
        let addr = SocketAddr::new(ip, p.host_port);
        let cannot =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot publish port {}:{}: {e}", ip, p.host_port));
        let (listener, bound) = match p.protocol {
            Protocol::Tcp => {
                let l = TcpListener::bind(addr).map_err(cannot)?;
                let port = l.local_addr()?.port();
                (Listener::Tcp(l), port)
            }
            Protocol::Udp => {
                let u = UdpSocket::bind(addr).map_err(cannot)?;
                let port = u.local_addr()?.port();
                (Listener::Udp(u), port)
            }
        };
        out.push((PortMapping { host_port: bound, ..p.clone() }, listener));
    }
    Ok(out)
}

/// What the dialer thread (inside the container's namespace) is asked to open.
enum Dial {
    Tcp(u16, mpsc::Sender<io::Result<TcpStream>>),
    Udp(u16, mpsc::Sender<io::Result<UdpSocket>>),
}

/// Serves published ports: every TCP connection is paired with one opened to
/// 127.0.0.1:<container port> inside the container's network namespace; every UDP client gets
/// its own socket there, forgotten after a minute of silence.
/// The published ports being served, closed (and their threads ended) by [`Published::close`]:
/// the host ports are free again the moment the container is reported ended, so a `restart`
/// or a new container can take them at once.
#[derive(Default)]
pub struct Published {
    sockets: Vec<std::os::fd::OwnedFd>,
    threads: Vec<thread::JoinHandle<()>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Published {
    pub fn close(self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in &self.sockets {
            // Wakes the thread blocked in accept or recv; it sees `closed` and ends.
            let _ = nix::sys::socket::shutdown(std::os::fd::AsRawFd::as_raw_fd(s), nix::sys::socket::Shutdown::Both);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

pub fn serve(listeners: Vec<(PortMapping, Listener)>, netns: &Path) -> io::Result<Published> {
    let mut published = Published::default();
    if listeners.is_empty() {
        return Ok(published);
    }
    let (req_tx, req_rx) = mpsc::channel::<Dial>();
    let ns = File::open(netns)?;
    thread::Builder::new().name("netns-dialer".into()).stack_size(64 * 1024).spawn(move || {
        if let Err(e) = setns(ns.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "cannot join the container's network namespace");
            return;
        }
        for req in req_rx {
            match req {
                Dial::Tcp(port, reply) => {
                    let _ = reply.send(TcpStream::connect((Ipv4Addr::LOCALHOST, port)));
                }
                Dial::Udp(port, reply) => {
                    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                        .and_then(|s| s.connect((Ipv4Addr::LOCALHOST, port)).map(|()| s));
                    let _ = reply.send(sock);
                }
            }
        }
    })?;
    for (mapping, listener) in listeners {
        let req_tx = req_tx.clone();
        let name = format!("port-{}", mapping.host_port);
        let closed = published.closed.clone();
        let handle = match listener {
            Listener::Tcp(l) => {
                published.sockets.push(std::os::fd::OwnedFd::from(l.try_clone()?));
                thread::Builder::new()
                    .name(name)
                    .stack_size(64 * 1024)
                    .spawn(move || serve_tcp(l, mapping.container_port, req_tx, &closed))?
            }
            Listener::Udp(u) => {
                published.sockets.push(std::os::fd::OwnedFd::from(u.try_clone()?));
                thread::Builder::new()
                    .name(name)
                    .stack_size(64 * 1024)
                    .spawn(move || serve_udp(u, mapping.container_port, req_tx, &closed))?
            }
        };
        published.threads.push(handle);
    }
    Ok(published)
}

fn serve_tcp(listener: TcpListener, port: u16, dialer: mpsc::Sender<Dial>, closed: &std::sync::atomic::AtomicBool) {
    for client in listener.incoming() {
        if closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let (tx, rx) = mpsc::channel();
        if dialer.send(Dial::Tcp(port, tx)).is_err() {
            return;
        }
        match rx.recv() {
            Ok(Ok(upstream)) => splice_pair(client, upstream),
            Ok(Err(e)) => tracing::debug!(port, error = %e, "container port refused"),
            Err(_) => return,
        }
    }
}

fn serve_udp(host: UdpSocket, port: u16, dialer: mpsc::Sender<Dial>, closed: &std::sync::atomic::AtomicBool) {
    let sessions: Arc<Mutex<HashMap<SocketAddr, UdpSocket>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let received = host.recv_from(&mut buf);
        if closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok((n, client)) = received else { continue };
        let existing = sessions.lock().ok().and_then(|m| m.get(&client).and_then(|s| s.try_clone().ok()));
        let upstream = match existing {
            Some(u) => u,
            None => {
                let (tx, rx) = mpsc::channel();
                if dialer.send(Dial::Udp(port, tx)).is_err() {
                    return;
                }
                let Ok(Ok(u)) = rx.recv() else { continue };
                let (Ok(reader), Ok(replies)) = (u.try_clone(), host.try_clone()) else { continue };
                if let Ok(mut m) = sessions.lock() {
                    m.insert(client, u.try_clone().expect("clone of a bound socket"));
                }
                let sessions = sessions.clone();
                let _ = thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                    let _ = reader.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = reader.recv(&mut buf) {
                        let _ = replies.send_to(&buf[..n], client);
                    }
                    if let Ok(mut m) = sessions.lock() {
                        m.remove(&client);
                    }
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
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
