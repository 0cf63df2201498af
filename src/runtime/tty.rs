//! Terminals for `run -t` and `exec -t`.
//!
//! The runtime creates the pseudo-terminal inside the container and sends its master side over
//! a "console socket" (the OCI convention): whoever listens on that socket owns the terminal.
//! An attached `run -it` or `exec -it` listens itself and relays between the user's terminal
//! (in raw mode, with its window size kept in sync) and the master; a detached `run -dt`
//! leaves the master with the shim, which logs what the container writes.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios::{self, SetArg, Termios};

/// A listening console socket; removed when dropped.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> io::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        Ok(ConsoleSocket { path: path.to_path_buf(), listener })
    }

    /// The socket an attached `run -t` listens on for container `id`'s terminal (under the
    /// run root: socket paths are limited to 108 bytes).
    pub fn for_container(host: &super::Host, id: &str) -> io::Result<ConsoleSocket> {
        crate::fsutil::private_dir(&host.paths().run_root)?;
        ConsoleSocket::bind(&host.paths().run_root.join(format!("console-{}.sock", &id[..12.min(id.len())])))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the runtime to send the terminal's master side.
    pub fn receive_master(&self, timeout: Duration) -> io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the container never sent its terminal"));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        let mut name = [0u8; 4096];
        let mut iov = [io::IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg
                && let Some(&fd) = fds.first()
            {
                // SAFETY: SCM_RIGHTS just gave this process a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, "the console socket message carried no terminal"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Puts the terminal on `fd` in raw mode until dropped.
struct RawMode {
    fd: std::fs::File,
    saved: Termios,
}

impl RawMode {
    fn enter(fd: std::fs::File) -> Option<RawMode> {
        let saved = termios::tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(get_winsize, libc_tiocgwinsz(), nix::pty::Winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc_tiocswinsz(), nix::pty::Winsize);

const fn libc_tiocgwinsz() -> u64 {
    0x5413
}
const fn libc_tiocswinsz() -> u64 {
    0x5414
}

/// Copies the user's window size to the container's terminal.
fn sync_size(from: &impl AsRawFd, to: &impl AsRawFd) {
    let mut ws = nix::pty::Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: both descriptors are open; the ioctls read or write one Winsize.
    unsafe {
        if get_winsize(from.as_raw_fd(), &mut ws).is_ok() && ws.ws_row > 0 {
            let _ = set_winsize(to.as_raw_fd(), &ws);
        }
    }
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: nix::libc::c_int) {
    RESIZED.store(true, Ordering::Relaxed);
}

/// Relays between this process's terminal and the container's until the container side
/// closes. With `interactive`, what the user types goes in; the user's terminal is in raw mode
/// meanwhile, so keys like Ctrl-C reach the container.
pub fn relay(master: OwnedFd, interactive: bool) -> io::Result<()> {
    let stdin = io::stdin();
    let tty_in = nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false);
    let _raw = if interactive && tty_in {
        stdin.as_fd().try_clone_to_owned().ok().map(std::fs::File::from).and_then(RawMode::enter)
    } else {
        None
    };
    if tty_in {
        sync_size(&stdin, &master);
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGWINCH,
                nix::sys::signal::SigHandler::Handler(on_winch),
            );
        }
    }
    let master_file = std::fs::File::from(master);
    let mut reader = master_file.try_clone()?;
    let mut writer = master_file;
    let output = std::thread::spawn(move || -> io::Result<()> {
        let mut out = io::stdout();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
                // EIO: the container's side closed (its processes exited).
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    });
    if interactive {
        let stdin_fd = stdin.as_fd().try_clone_to_owned()?;
        let mut buf = [0u8; 4096];
        while !output.is_finished() {
            if RESIZED.swap(false, Ordering::Relaxed) {
                sync_size(&stdin_fd, &writer);
            }
            let mut fds = [nix::poll::PollFd::new(stdin_fd.as_fd(), nix::poll::PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let n = nix::unistd::read(stdin_fd.as_raw_fd(), &mut buf).unwrap_or(0);
            if n == 0 {
                // End of input: tell the container (Ctrl-D) and stop sending.
                let _ = writer.write_all(&[4]);
                break;
            }
            if writer.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }
    output.join().unwrap_or(Ok(()))
}

/// Asks the person at this process's terminal (`/dev/tty`) for a secret, without echoing it.
pub fn prompt(msg: &str) -> io::Result<Vec<u8>> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open the terminal: {e}")))?;
    let old = tcgetattr(&tty)?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{msg}");
    tcsetattr(&tty, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let result = io::BufRead::read_line(&mut io::BufReader::new(&tty), &mut line);
    tcsetattr(&tty, SetArg::TCSANOW, &old)?;
    eprintln!();
    result?;
    Ok(line.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}
