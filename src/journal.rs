//! Structured entries for the systemd journal, written with its native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>): one datagram of fields to
//! `ROOT/run/systemd/journal/socket`, or, for an entry too large for a
//! datagram, a sealed memfd holding it, passed along the socket. Where no
//! journal listens (a container, a test's root) nothing is sent, silently: an
//! entry is a record of what happened, never a reason to fail.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix};

/// journald's socket, beneath ROOT.
pub const SOCKET: &str = "run/systemd/journal/socket";

/// A field name journald accepts: upper-case letters, digits and `_`, not
/// starting with `_` (trusted fields) or a digit, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// The entry as the protocol has it: `NAME=value\n`, or, for a value holding a
/// newline, `NAME\n`, its length as 64-bit little endian, the value, `\n`.
pub fn encode(fields: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        debug_assert!(valid_name(name), "bad journal field name {name}");
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Sends one entry to the journal of the system at `root`. `Ok(false)`: there
/// is no journal there.
pub fn send(root: &Path, fields: &[(&str, String)]) -> anyhow::Result<bool> {
    let path = root.join(SOCKET);
    let addr = SocketAddrUnix::new(&path).with_context(|| format!("bad socket path {}", path.display()))?;
    let socket = std::os::unix::net::UnixDatagram::unbound().context("cannot create a datagram socket")?;
    let entry = encode(fields);
    let sent = rustix::net::sendto(&socket, &entry, SendFlags::empty(), &addr);
    match sent {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED | rustix::io::Errno::NOTDIR) => Ok(false),
        // Larger than a datagram may be: the entry goes in a memfd.
        Err(rustix::io::Errno::MSGSIZE | rustix::io::Errno::NOBUFS) => send_memfd(&socket, &addr, &entry),
        Err(e) => Err(e).with_context(|| format!("cannot send to {}", path.display())),
    }
}

fn send_memfd(socket: &impl AsFd, addr: &SocketAddrUnix, entry: &[u8]) -> anyhow::Result<bool> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create("livefs-journal", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .context("cannot create a memfd for the journal entry")?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, entry).context("cannot write the journal entry to its memfd")?;
    // journald only takes a sealed memfd: the entry cannot change under it.
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
    rustix::fs::fcntl_add_seals(&file, seals).context("cannot seal the journal entry's memfd")?;
    let fds = [file.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let iov: [IoSlice; 0] = [];
    rustix::net::sendmsg_addr(socket, addr, &iov, &mut control, SendFlags::empty())
        .context("cannot pass the journal entry's memfd")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_encoded_as_the_protocol_says() {
        let entry = encode(&[("MESSAGE", "one line".into()), ("LIVEFS_ERROR", "two\nlines".into())]);
        let mut want = b"MESSAGE=one line\nLIVEFS_ERROR\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(entry, want);
    }

    #[test]
    fn field_names() {
        for ok in ["MESSAGE", "MESSAGE_ID", "LIVEFS_TO", "A1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "_PID", "1A", "livefs", "LIVEFS-TO", &"A".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// A real datagram socket stands for journald: what arrives is the entry;
    /// with no socket, nothing is sent and nothing fails.
    #[test]
    fn an_entry_reaches_the_socket_and_no_socket_is_no_error() {
        let root = tempfile::tempdir().unwrap();
        let fields = [("MESSAGE", "hello".to_string()), ("LIVEFS_UNIT", "a.service".to_string())];
        assert!(!send(root.path(), &fields).unwrap(), "no socket: nothing sent");
        std::fs::create_dir_all(root.path().join("run/systemd/journal")).unwrap();
        let journal = std::os::unix::net::UnixDatagram::bind(root.path().join(SOCKET)).unwrap();
        assert!(send(root.path(), &fields).unwrap());
        let mut buf = [0u8; 256];
        let n = journal.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], encode(&fields).as_slice());
        // Too large for one datagram: a memfd arrives instead.
        let big = [("MESSAGE", "x".repeat(4 << 20))];
        assert!(send(root.path(), &big).unwrap());
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = rustix::net::recvmsg(&journal, &mut iov, &mut control, rustix::net::RecvFlags::empty()).unwrap();
        assert_eq!(msg.bytes, 0, "the entry travels in the memfd, not the datagram");
        let fd = control
            .drain()
            .find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("no memfd passed");
        // The memfd's offset is shared with the sender's, at its end: read from 0.
        let mut file = std::fs::File::from(fd);
        std::io::Seek::rewind(&mut file).unwrap();
        let mut passed = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut passed).unwrap();
        assert!(passed == encode(&big), "the memfd holds {} bytes, not the entry", passed.len());
    }
}
